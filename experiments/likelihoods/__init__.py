"""How far is the importance-weighted bound from log p(x)? AIS and BDMC on a trained model."""
