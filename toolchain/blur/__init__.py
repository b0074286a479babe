"""The pipelined face-blur job (`fbtool blur`): concurrent stages, a contour-mask blur, and a
pixel-level proof that faces were blurred (proof.py). See docs/blur.md."""
