"""Material for training and evaluation: the labelled pack and the negatives split by source and speaker, generated
ordinary audio, and long streams with known truth."""
