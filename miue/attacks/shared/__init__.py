"""Parts several attacks share and none of them is: the PGD sweep over a set (EM, AP), the UNet noise
generator (GUE, DeepConfuse) and the MINE regulariser of MI-UE Table 8 (EM, AP)."""
