"""Where weights come from: hub sources in the catalogue, the local cache, downloads."""
