"""Request shaping shared by both drivers: what is sent to the LLM and what comes back.

- :mod:`.prompts`: messages and the response format;
- :mod:`.tokens`: token counting and ``max_tokens`` sizing;
- :mod:`.client`: the OpenAI client, retry and error classes;
- :mod:`.validate`: answers checked and cleaned into sentences;
- :mod:`.pricing`: prices per model, online and batch.
"""
