//! Parameter initialisation: MindCV's random init (`SENet._initialize_weights`) and the
//! deterministic "formula" weights of `shared/golden/README.md` that the golden outputs use.
use super::params::{ParamKind, ParamSpec};
use crate::{Result, Tensor};

/// FNV-1a 64 of `s`'s UTF-8 bytes.
pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// splitmix64 finaliser of `x`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// The formula's uniform stream for `name`: `u_i = (splitmix64(fnv1a64(name) + i) >> 11) * 2^-53`.
pub fn formula_uniform(name: &str, n: usize) -> impl Iterator<Item = f64> {
    let h = fnv1a64(name);
    (0..n as u64)
        .map(move |i| (splitmix64(h.wrapping_add(i)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64))
}

/// Fan-in of a conv (out, in/g, kh, kw) or Dense (out, in) weight.
pub fn fan_in(shape: &[usize]) -> usize {
    shape[1..].iter().product()
}

/// The golden formula value of a parameter (`shared/golden/README.md`): weights
/// `(2u-1)*sqrt(3/fan_in)`, gamma and moving_variance `0.5+u`, beta, moving_mean and bias
/// `(2u-1)*0.1`; computed in f64, rounded to f32. (For a small tensor; models are built with
/// [`try_formula_param`], which allocates fallibly.)
pub fn formula_param(spec: &ParamSpec) -> Tensor {
    Tensor {
        shape: spec.shape.clone(),
        data: formula_values(spec).collect(),
    }
}

/// [`formula_param`], its storage a fallible allocation.
/// Errors: [`crate::Error::OutOfMemory`] naming the parameter.
pub fn try_formula_param(spec: &ParamSpec) -> Result<Tensor> {
    from_values(spec, formula_values(spec))
}

fn formula_values(spec: &ParamSpec) -> impl Iterator<Item = f32> {
    let n: usize = spec.shape.iter().product();
    let kind = spec.kind;
    let a = match kind {
        ParamKind::ConvWeight | ParamKind::DenseWeight => (3.0 / fan_in(&spec.shape) as f64).sqrt(),
        _ => 0.0,
    };
    formula_uniform(&spec.name, n).map(move |u| match kind {
        ParamKind::ConvWeight | ParamKind::DenseWeight => ((2.0 * u - 1.0) * a) as f32,
        ParamKind::Gamma | ParamKind::MovingVariance => (0.5 + u) as f32,
        ParamKind::Beta | ParamKind::MovingMean | ParamKind::Bias => ((2.0 * u - 1.0) * 0.1) as f32,
    })
}

/// A tensor of `spec`'s shape holding `values` (exactly its element count), in a fallible
/// allocation. Errors: [`crate::Error::OutOfMemory`] naming the parameter.
fn from_values(spec: &ParamSpec, values: impl Iterator<Item = f32>) -> Result<Tensor> {
    let n: usize = spec.shape.iter().product();
    let mut data = crate::mem::with_capacity(n, || {
        format!("parameter '{}' of shape {:?}", spec.name, spec.shape)
    })?;
    data.extend(values.take(n));
    Ok(Tensor {
        shape: spec.shape.clone(),
        data,
    })
}

/// The golden formula input tensor named `name`: `(2u-1)*2`, rounded to f32.
pub fn formula_input(name: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor {
        shape: shape.to_vec(),
        data: formula_uniform(name, n)
            .map(|u| ((2.0 * u - 1.0) * 2.0) as f32)
            .collect(),
    }
}

/// A small deterministic PRNG (splitmix64 stream) for random initialisation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Uniform f64 in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(1);
        (splitmix64(self.0) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// MindCV's initialisation (`SENet._initialize_weights`): conv weights HeNormal(fan_out, relu),
/// i.e. N(0, 2/(out*kh*kw)); Dense weights HeUniform(fan_in, gain 1): U(+-sqrt(3/fan_in));
/// biases and beta 0; gamma 1; moving mean 0, moving variance 1. Deterministic per `seed` and
/// parameter name. Errors: [`crate::Error::OutOfMemory`] naming the parameter (its storage is a
/// fallible allocation: a 1,000,000-class classifier is 8 GB).
pub fn mindcv_init(spec: &ParamSpec, seed: u64) -> Result<Tensor> {
    let mut rng = Rng::new(seed ^ fnv1a64(&spec.name));
    let values: Box<dyn Iterator<Item = f32>> = match spec.kind {
        ParamKind::ConvWeight => {
            let fan_out = spec.shape[0] * spec.shape[2] * spec.shape[3];
            let std = (2.0 / fan_out as f64).sqrt();
            Box::new(std::iter::repeat_with(move || (rng.normal() * std) as f32))
        }
        ParamKind::DenseWeight => {
            let a = (3.0 / fan_in(&spec.shape) as f64).sqrt();
            Box::new(std::iter::repeat_with(move || {
                ((2.0 * rng.uniform() - 1.0) * a) as f32
            }))
        }
        ParamKind::Gamma | ParamKind::MovingVariance => Box::new(std::iter::repeat(1.0)),
        ParamKind::Beta | ParamKind::MovingMean | ParamKind::Bias => {
            Box::new(std::iter::repeat(0.0))
        }
    };
    from_values(spec, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README prints 7-8 significant digits.
    fn assert_close(got: &[f32], want: &[f32]) {
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-7 * w.abs().max(1e-3),
                "{got:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn formula_check_values() {
        assert_eq!(fnv1a64("layer0.0.weight"), 0xed625872a7ba848e);
        let spec = ParamSpec {
            name: "layer0.0.weight".into(),
            shape: vec![64, 3, 7, 7],
            kind: ParamKind::ConvWeight,
        };
        let t = formula_param(&spec);
        assert_close(
            &t.data[..4],
            &[-0.02547394, -0.09771207, 0.08338909, 0.09845293],
        );
        let g = formula_param(&ParamSpec {
            name: "layer1.0.bn1.gamma".into(),
            shape: vec![64],
            kind: ParamKind::Gamma,
        });
        assert_close(&g.data[..3], &[1.258478, 1.4726199, 0.6882754]);
        let x = formula_input("input", &[2, 3, 224, 224]);
        assert_close(
            &x.data[..4],
            &[-1.6087266, -1.4100856, 0.29633778, 1.4109113],
        );
    }
}
