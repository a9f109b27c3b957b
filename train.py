"""Train a learned image codec: ``python train.py model=hyperprior lambda=0.0067`` (see README).

A thin wrapper: the application, its configs and its entry point live in the package (``compresslab train …`` does
the same from any folder)."""

from compresslab.app import main

if __name__ == "__main__":
    main()
