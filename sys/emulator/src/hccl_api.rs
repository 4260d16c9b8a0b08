//! HCCL (to do)
