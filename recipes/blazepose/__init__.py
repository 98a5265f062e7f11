"""BlazePose landmark family: data only (recipe.yaml); decoding is the generic regression decoder."""
