"""Input pipelines and raw-file readers; data knows no model."""
