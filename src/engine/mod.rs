//! The jobs the CLI and the C ABI call: validate, predict, preprocess, bench, models.
