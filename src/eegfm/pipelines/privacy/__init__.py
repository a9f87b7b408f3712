"""De-identification: keyed pseudonyms, the clinical fields allowed out, and redaction of names."""
