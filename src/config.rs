//! MindCV recipes (`configs/senet/*.yaml`).
