"""Model-side building blocks shared by training, export and serving.

The tokenizer, the vocabulary and the recurrent language model live here so
that the service imports exactly the code the model was trained with.
"""
