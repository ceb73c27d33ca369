"""Language features, one module each. See `base.Feature` for the shape they share."""
