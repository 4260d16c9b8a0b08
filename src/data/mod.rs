//! Data: ImageFolder datasets, JPEG/PNG decoding, MindCV's transforms, the batched loader.
