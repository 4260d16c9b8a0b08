//! The entry points senet's fuzz targets (`fuzz/`, cargo-fuzz) drive, and that the stable test
//! `tests/corpus.rs` replays on the committed regression corpus (`tests/corpus/<target>/`):
//! each reads arbitrary bytes exactly as senet reads the matching kind of file. Bad input must
//! come back as an `Err`; a panic, an abort, a hang or an allocation that kills the process is
//! a bug.
use crate::checkpoint::{parse_ckpt, parse_safetensors, Checkpoint};
use crate::config::Recipe;
use crate::data::{decode_named, parse_class_map, EvalTransform, TrainTransform};
use crate::{Error, Result};
use std::path::Path;

/// A kind of untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A MindSpore `.ckpt` file ([`parse_ckpt`]), every tensor then converted to f32.
    Ckpt,
    /// A safetensors file ([`parse_safetensors`]), every tensor then converted to f32.
    Safetensors,
    /// An encoded JPEG or PNG ([`decode_named`], with its pixel limit), then MindCV's eval
    /// transform ([`EvalTransform::apply_named`], with its resize limit).
    Image,
    /// A MindCV YAML recipe ([`Recipe::from_yaml_str`]), validated, then the eval and train
    /// transforms it describes.
    Recipe,
    /// A class map ([`parse_class_map`]).
    ClassMap,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 5] = [
        Target::Ckpt,
        Target::Safetensors,
        Target::Image,
        Target::Recipe,
        Target::ClassMap,
    ];

    /// The target's name: its fuzz target (`cargo fuzz run NAME`) and corpus folder.
    pub fn name(self) -> &'static str {
        match self {
            Target::Ckpt => "ckpt",
            Target::Safetensors => "safetensors",
            Target::Image => "image",
            Target::Recipe => "recipe",
            Target::ClassMap => "classmap",
        }
    }

    /// The target called `name` ([`Target::name`]).
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Reads `data` as this kind of input. Errors: whatever the reader reports for bad input
    /// (never a panic).
    pub fn run(self, data: &[u8]) -> Result<()> {
        let name = Path::new(self.name());
        match self {
            Target::Ckpt => to_f32(parse_ckpt(name, data)?),
            Target::Safetensors => to_f32(parse_safetensors(name, data)?),
            Target::Image => {
                let img = decode_named(data, name)?;
                EvalTransform::default().apply_named(&img, name).map(drop)
            }
            Target::Recipe => {
                let recipe = Recipe::from_yaml_str(text(name, data)?)?;
                recipe.validate()?;
                crate::engine::eval_transform(&recipe)?;
                TrainTransform::from_recipe(&recipe).map(drop)
            }
            Target::ClassMap => parse_class_map(name, text(name, data)?).map(drop),
        }
    }
}

fn text<'a>(name: &Path, data: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(data).map_err(|_| Error::format(name, "not UTF-8"))
}

fn to_f32(ck: Checkpoint) -> Result<()> {
    for (_, t) in &ck.tensors {
        t.to_f32()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_input_is_an_error() {
        for t in Target::ALL {
            assert_eq!(Target::from_name(t.name()), Some(t));
            assert!(t.run(b"\xff\x00 not valid input").is_err(), "{t:?}");
        }
        assert_eq!(Target::from_name("nope"), None);
        assert!(Target::ClassMap.run(b"a\nb\n").is_ok());
    }
}
