"""Data: image files (images), dataset layouts (layouts), the Lightning datamodule (module), WebDataset shards
(shards), cached latents (latent_cache) and downloads with their manifest (fetch)."""
