"""Stage 5: the study's safeguards: index exclusion and anonymisation."""
