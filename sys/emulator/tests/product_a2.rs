//! The contract on an emulated Atlas A2 (`SENET_EMU_SOC=Ascend910B2`, CANN 9.1): each class of
//! rule refuses what the vendor documents as unsupported and accepts (and computes) the rest.
mod common;

use common::*;

#[test]
fn a2_follows_the_contract() {
    let _serial = init_env(&[("SENET_EMU_SOC", "Ascend910B2")]);
    a2a3::assert_a2_a3();
}
