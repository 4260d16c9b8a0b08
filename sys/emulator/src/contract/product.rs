//! Which product line and which CANN release the emulator plays: `SENET_EMU_SOC` names the SoC
//! (as `aclrtGetSocName` reports it) and maps to one of the contract's product lines;
//! `SENET_EMU_CANN_VERSION` picks the CANN release whose documentation applies.

/// A product line of the contract (`aclnn-contract.json` `_meta.products`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Product {
    /// Atlas 训练系列产品: the first-generation Ascend 910 (910A/ProA/B/ProB/PremiumA).
    Atlas910,
    /// Atlas A2 训练/推理系列产品: Ascend 910B1..B4.
    A2,
    /// Atlas A3 训练/推理系列产品: Ascend 910_93xx.
    A3,
    /// Ascend 950PR/950DT.
    Ascend950,
    /// Atlas 推理系列产品: Ascend 310P.
    Inference310P,
    /// Atlas 200I/500 A2 推理产品: Ascend 310B.
    A2Inference310B,
}

impl Product {
    /// Every product line, in the contract's order.
    pub const ALL: [Product; 6] = [
        Product::Atlas910,
        Product::A2,
        Product::A3,
        Product::Ascend950,
        Product::Inference310P,
        Product::A2Inference310B,
    ];

    /// The key of the product in `aclnn-contract.json`.
    pub fn key(self) -> &'static str {
        match self {
            Product::Atlas910 => "Atlas_training_910",
            Product::A2 => "Atlas_A2_910B",
            Product::A3 => "Atlas_A3_910_93",
            Product::Ascend950 => "Ascend_950",
            Product::Inference310P => "Atlas_inference_310P",
            Product::A2Inference310B => "Atlas_200I_500_A2_310B",
        }
    }

    /// The name the contract's Markdown tables use (`910 (Atlas 训练)`, `A2 (910B)`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Product::Atlas910 => "910 (Atlas 训练, first generation)",
            Product::A2 => "A2 (910B)",
            Product::A3 => "A3 (910_93)",
            Product::Ascend950 => "950",
            Product::Inference310P => "310P",
            Product::A2Inference310B => "310B",
        }
    }

    /// The product line of the SoC name `soc` (`Ascend910A`, `Ascend910B2`, `Ascend910_9391`,
    /// ...), or `None` for a name the emulator does not know.
    pub fn from_soc(soc: &str) -> Option<Product> {
        const FIRST_GEN: [&str; 5] = ["A", "ProA", "B", "ProB", "PremiumA"];
        if let Some(rest) = soc.strip_prefix("Ascend910") {
            if FIRST_GEN.contains(&rest) {
                return Some(Product::Atlas910);
            }
            if let Some(tail) = rest.strip_prefix('B') {
                // 910B1..B4, with package suffixes such as `Ascend910B2C` or `Ascend910B4-1`.
                return tail
                    .starts_with(['1', '2', '3', '4'])
                    .then_some(Product::A2);
            }
            if let Some(tail) = rest.strip_prefix("_93") {
                let digits = tail.chars().take_while(char::is_ascii_digit).count();
                return (digits >= 1).then_some(Product::A3);
            }
            return None;
        }
        if soc.starts_with("Ascend950") {
            return Some(Product::Ascend950);
        }
        if soc.starts_with("Ascend310P") {
            return Some(Product::Inference310P);
        }
        if soc.starts_with("Ascend310B") {
            return Some(Product::A2Inference310B);
        }
        None
    }

    /// The SoC names [`Product::from_soc`] accepts, for error messages.
    pub const SOC_NAMES: &'static str = "Ascend910A, Ascend910ProA, Ascend910B, Ascend910ProB, \
        Ascend910PremiumA (first-generation 910); Ascend910B1..Ascend910B4 (A2); \
        Ascend910_93xx (A3); Ascend950*; Ascend310P*; Ascend310B*";
}

/// A CANN release whose documented contract the emulator follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CannVersion {
    /// CANN 8.0 (the hiascend.com 8.0.0 operator pages and the 8.0-era runtime headers).
    V8_0,
    /// CANN 9.1: the ops-nn/ops-math/opbase snapshots the contract was read from
    /// (`hicann/ops-nn@e5c3fa9327ea` builds package version 9.1.0).
    V9_1,
}

impl CannVersion {
    /// The newest release the contract covers: the default.
    pub const NEWEST: CannVersion = CannVersion::V9_1;

    /// Parses `8.0`, `8.0.0`, `9.1`, `9.1.0`.
    pub fn parse(s: &str) -> Option<CannVersion> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        let (major, minor) = match parts.as_slice() {
            [a, b] | [a, b, "0"] => (*a, *b),
            _ => return None,
        };
        match (major, minor) {
            ("8", "0") => Some(CannVersion::V8_0),
            ("9", "1") => Some(CannVersion::V9_1),
            _ => None,
        }
    }

    /// `8.0` or `9.1`.
    pub fn label(self) -> &'static str {
        match self {
            CannVersion::V8_0 => "8.0",
            CannVersion::V9_1 => "9.1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soc_names_map_to_product_lines() {
        for s in [
            "Ascend910A",
            "Ascend910ProA",
            "Ascend910B",
            "Ascend910ProB",
            "Ascend910PremiumA",
        ] {
            assert_eq!(Product::from_soc(s), Some(Product::Atlas910), "{s}");
        }
        for s in [
            "Ascend910B1",
            "Ascend910B2",
            "Ascend910B2C",
            "Ascend910B3",
            "Ascend910B4",
            "Ascend910B4-1",
        ] {
            assert_eq!(Product::from_soc(s), Some(Product::A2), "{s}");
        }
        for s in ["Ascend910_9391", "Ascend910_9392", "Ascend910_9382"] {
            assert_eq!(Product::from_soc(s), Some(Product::A3), "{s}");
        }
        assert_eq!(
            Product::from_soc("Ascend310P3"),
            Some(Product::Inference310P)
        );
        assert_eq!(
            Product::from_soc("Ascend310B1"),
            Some(Product::A2Inference310B)
        );
        assert_eq!(
            Product::from_soc("Ascend950PR_9599"),
            Some(Product::Ascend950)
        );
        for s in [
            "Ascend910",
            "Ascend910B5",
            "Ascend910_",
            "Ascend910C",
            "GPU",
            "",
        ] {
            assert_eq!(Product::from_soc(s), None, "{s}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(CannVersion::parse("8.0"), Some(CannVersion::V8_0));
        assert_eq!(CannVersion::parse(" 8.0.0 "), Some(CannVersion::V8_0));
        assert_eq!(CannVersion::parse("9.1"), Some(CannVersion::V9_1));
        for s in ["8", "8.1", "9.0", "8.0.1", "x", ""] {
            assert_eq!(CannVersion::parse(s), None, "{s}");
        }
        assert_eq!(CannVersion::NEWEST.label(), "9.1");
    }
}
