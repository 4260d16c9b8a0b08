//! The contract on an emulated Atlas A3 (`SENET_EMU_SOC=Ascend910_9391`, CANN 9.1).
mod common;

use common::*;

#[test]
fn a3_follows_the_contract() {
    let _serial = init_env(&[("SENET_EMU_SOC", "Ascend910_9391")]);
    a2a3::assert_a2_a3();
}
