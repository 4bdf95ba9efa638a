"""The project's original script, as it ran: one filter at a time, eager TensorFlow, 50 steps of
L2-normalized gradient ascent on the post-ReLU channel mean from near-zero noise. Kept only as the
baseline of ``atlas bench speed`` (run as its own process, like the original)."""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generator.bench.original")
    parser.add_argument("--weights", default="hed-bsds500")
    parser.add_argument("--layer", default="block3_conv3")
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args(argv)
    from generator.network import backend

    backend.select("tensorflow")
    import keras
    import tensorflow as tf

    from generator.network.models import load_model

    model = load_model("vgg16", args.weights).model
    extractor = keras.Model(inputs=model.inputs, outputs=model.get_layer(args.layer).output)
    start = time.perf_counter()
    for f in range(args.filters):
        img = tf.random.uniform((1, args.size, args.size, 3), -0.5, 0.5, seed=f)
        for _ in range(args.steps):
            with tf.GradientTape() as tape:
                tape.watch(img)
                loss = tf.reduce_mean(extractor(img)[:, :, :, f])
            grads = tf.math.l2_normalize(tape.gradient(loss, img))
            img = img + 10.0 * grads
        float(loss)
    print(f"{args.filters} filters in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
