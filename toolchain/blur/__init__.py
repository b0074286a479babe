"""The face-blur job (`fbtool blur`): the app (app.py: the job, engines.py: which detector runs,
writer.py), the concurrent pipeline (pipeline/), the blur operations (ops/), and the pixel-level
proof that faces were blurred (proof.py). See docs/blur.md."""
