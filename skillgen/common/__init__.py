"""Pieces both skillgen and skilltrain need: the bundled data, the taxonomy, user errors, Ray start-up."""
