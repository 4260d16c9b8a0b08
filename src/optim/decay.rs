//! Which trainable parameters get weight decay, as MindCV's `create_optimizer` groups them.
use crate::config::WeightDecayFilter;

/// Whether the trainable parameter `name` (a MindCV parameter name such as
/// `layer1.0.bn1.gamma`) gets weight decay under the recipe's `weight_decay_filter` and legacy
/// `filter_bias_and_bn`:
///
/// - `filter_bias_and_bn: None` (MindCV since PR #752, 2024; the current SENet recipes) — the
///   `weight_decay_filter`:
///   - `disable`: every trainable parameter decays (one group with the weight decay);
///   - `norm_and_bias`: names containing `beta`, `gamma` or `bias` do not decay (a second group
///     with `weight_decay: 0.0`);
///   - `auto`: MindCV passes the plain parameter list, so MindSpore's `nn.Optimizer` applies its
///     own default filter: names containing `beta` or `gamma` (normalisation) do not decay, but
///     biases do.
/// - `filter_bias_and_bn: Some(true)` (MindCV before #752, what the SENet models were trained
///   with): MindCV meant to exclude `beta`/`gamma`/`bias`, but built the no-decay group without
///   a `weight_decay` key, and MindSpore gives such a group the optimizer's default weight
///   decay, which MindCV set to the same value — so *every* parameter still decays (the bug
///   documented in PR #752). Reproduced: returns true.
/// - `filter_bias_and_bn: Some(false)` (before #752): the plain parameter list, so MindSpore's
///   default filter, as `auto` (`beta`/`gamma` excluded).
///
/// The legacy flag, when set, takes precedence: no MindCV version accepted both keys.
/// Non-trainable tensors (BN `moving_mean`/`moving_variance`) never reach the optimizer; do not
/// ask about them. The SENet models define no `no_weight_decay()` list.
pub fn decays(name: &str, filter: WeightDecayFilter, filter_bias_and_bn: Option<bool>) -> bool {
    let norm = name.contains("beta") || name.contains("gamma");
    match (filter_bias_and_bn, filter) {
        (Some(true), _) => true,
        (Some(false), _) | (None, WeightDecayFilter::Auto) => !norm,
        (None, WeightDecayFilter::Disable) => true,
        (None, WeightDecayFilter::NormAndBias) => !(norm || name.contains("bias")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WeightDecayFilter::*;

    #[test]
    fn train_decay_filters() {
        let names = [
            "layer0.0.weight",
            "layer0.1.gamma",
            "layer0.1.beta",
            "layer1.0.se_module.conv_reduce.bias",
            "classifier.weight",
        ];
        let pick =
            |f, legacy| -> Vec<bool> { names.iter().map(|n| decays(n, f, legacy)).collect() };
        assert_eq!(pick(Disable, None), [true; 5]);
        assert_eq!(pick(NormAndBias, None), [true, false, false, false, true]);
        assert_eq!(pick(Auto, None), [true, false, false, true, true]);
        assert_eq!(pick(NormAndBias, Some(true)), [true; 5]);
        assert_eq!(pick(Disable, Some(false)), [true, false, false, true, true]);
    }
}
