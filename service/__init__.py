"""The nextword BentoML service: validate -> batch -> infer -> sample -> respond."""
