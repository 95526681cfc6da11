"""The tasks zoo networks solve: coordinate grids and target images for INRs, image sets for CNNs."""
