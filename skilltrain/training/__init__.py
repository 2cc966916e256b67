"""Training: pairs from generated sentences, skill-unique batches, the distributed InfoNCE loss, GradCache, Ray Train."""
