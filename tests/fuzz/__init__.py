"""Coverage-guided fuzzing (atheris) of the normaliser, the detection engine and the validation stage."""
