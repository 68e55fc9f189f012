"""SAEs on toy-model activations: sae-lens training SAEs batched over instances, trained on
activations drawn on the fly, and scored against the toy model's known feature directions."""
