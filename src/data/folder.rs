//! The ImageFolder dataset layout MindCV uses (MindSpore's `ImageFolderDataset` on
//! `data_dir/split`): one sub-folder per class, class index = position of the folder name in sorted
//! order, or as given by a class map file; and [`list_images`] for loose files.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File extensions (compared case-insensitively) taken as images.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Whether `path` has an image extension (`.jpg`, `.jpeg`, `.png`, any case).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// A labelled image dataset laid out as `data_dir/split/<class folder>/<image>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolder {
    /// The folder holding the class folders (`data_dir/split`).
    pub root: PathBuf,
    /// `(image path, class index)`, ordered by class index, then file name (byte order).
    pub samples: Vec<(PathBuf, usize)>,
    /// Folder name of each class index (`len() == num_classes`; empty for indices a class map
    /// leaves undefined).
    pub classes: Vec<String>,
    /// Human-readable name of each class index: the TSV's third column when a TSV class map gives
    /// one, else the folder name.
    pub class_names: Vec<String>,
}

impl ImageFolder {
    /// Scans `data_dir/split`. Images are the files with an [`IMAGE_EXTENSIONS`] extension directly
    /// inside a class folder (other files and deeper folders are ignored).
    ///
    /// Class indices: without `class_map`, the sorted sub-folder names get 0, 1, ...; with
    /// `class_map`, either one folder name per line (index = line number, blank lines skipped) or
    /// a TSV `index<TAB>folder[<TAB>name]` like `imagenet_classes.tsv` — so a folder holding a
    /// subset of ImageNet classes keeps the ImageNet indices (and `num_classes()` is 1000).
    ///
    /// Errors: [`Error::Io`] naming `data_dir/split` when it cannot be read (missing, not a
    /// folder) or the class map file; [`Error::Format`] for a malformed class map line;
    /// [`Error::Config`] naming a class folder absent from the class map, or when no image is found.
    pub fn open(data_dir: &Path, split: &str, class_map: Option<&Path>) -> Result<ImageFolder> {
        let root = data_dir.join(split);
        let folders = class_folders(&root)?;

        let (classes, class_names) = match class_map {
            Some(map) => read_class_map(map)?,
            None => (folders.clone(), folders.clone()),
        };
        let index: HashMap<&str, usize> = classes
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .map(|(i, c)| (c.as_str(), i))
            .collect();

        let mut samples: Vec<(usize, std::ffi::OsString, PathBuf)> = Vec::new();
        for folder in &folders {
            let label = *index.get(folder.as_str()).ok_or_else(|| {
                Error::Config(format!(
                    "class folder '{folder}' in {} is not in the class map {}",
                    root.display(),
                    class_map
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ))
            })?;
            let dir = root.join(folder);
            for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let path = entry.path();
                if is_image_file(&path) && path.is_file() {
                    samples.push((label, entry.file_name(), path));
                }
            }
        }
        if samples.is_empty() {
            return Err(Error::Config(format!(
                "no images (.jpg/.jpeg/.png) in the class folders of {}",
                root.display()
            )));
        }
        samples.sort();
        Ok(ImageFolder {
            root,
            samples: samples.into_iter().map(|(l, _, p)| (p, l)).collect(),
            classes,
            class_names,
        })
    }

    /// Number of classes: the number of class folders, or the class map's size.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there is no image (never true for a folder [`ImageFolder::open`] accepted).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// The class folder names of an ImageFolder split (`data_dir/split`), sorted: entry `i` names
/// class index `i`, as MindSpore's `ImageFolderDataset` numbers them. Errors: [`Error::Io`]
/// naming `dir` when it cannot be read.
pub fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let mut folders: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.path().is_dir() {
            folders.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    folders.sort();
    Ok(folders)
}

/// Reads a class map file: one class folder name per line (index = line number), or the TSV
/// `index<TAB>folder[<TAB>name]` of `imagenet_classes.tsv`. Returns `(folder name per index,
/// human name per index)`; the human name is the folder name where the file gives none.
/// Errors: [`Error::Io`] naming an unreadable file, [`Error::Format`] for a malformed line.
pub fn read_class_map(path: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return Err(Error::format(path, "empty class map"));
    }
    let mut seen = HashMap::new();
    let mut check_dup = |name: &str, lineno: usize| match seen.insert(name.to_string(), lineno) {
        Some(first) => Err(Error::format(
            path,
            format!(
                "line {}: class '{name}' already on line {}",
                lineno + 1,
                first + 1
            ),
        )),
        None => Ok(()),
    };
    if !lines.iter().any(|(_, l)| l.contains('\t')) {
        let mut classes = Vec::with_capacity(lines.len());
        for &(n, l) in &lines {
            let name = l.trim();
            check_dup(name, n)?;
            classes.push(name.to_string());
        }
        return Ok((classes.clone(), classes));
    }
    let mut entries = Vec::with_capacity(lines.len());
    for &(n, l) in &lines {
        let mut cols = l.split('\t');
        let idx = cols.next().unwrap_or("").trim();
        let idx: usize = idx.parse().map_err(|_| {
            Error::format(
                path,
                format!(
                    "line {}: expected index<TAB>folder[<TAB>name], got '{l}'",
                    n + 1
                ),
            )
        })?;
        let folder = cols.next().map(str::trim).unwrap_or("");
        if folder.is_empty() {
            return Err(Error::format(
                path,
                format!("line {}: missing the folder column", n + 1),
            ));
        }
        check_dup(folder, n)?;
        let name = cols.next().map(str::trim).filter(|s| !s.is_empty());
        entries.push((
            idx,
            n,
            folder.to_string(),
            name.unwrap_or(folder).to_string(),
        ));
    }
    let num = entries.iter().map(|e| e.0).max().unwrap_or(0) + 1;
    let mut classes = vec![String::new(); num];
    let mut names = vec![String::new(); num];
    for (idx, n, folder, name) in entries {
        if !classes[idx].is_empty() {
            return Err(Error::format(
                path,
                format!("line {}: index {idx} given twice", n + 1),
            ));
        }
        classes[idx] = folder;
        names[idx] = name;
    }
    Ok((classes, names))
}

/// The image files named by `paths`, for prediction or preprocessing: a file is taken as given
/// (whatever its extension); a folder contributes every image file ([`is_image_file`]) below it,
/// recursively, sorted by path. Arguments keep their order.
///
/// Errors: [`Error::Io`] naming a path that does not exist or a folder that cannot be read.
pub fn list_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            walk(&path, found)?;
        } else if is_image_file(&path) {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_extensions_any_case() {
        assert!(is_image_file(Path::new("a/b.JPEG")));
        assert!(is_image_file(Path::new("b.Png")));
        assert!(is_image_file(Path::new("b.jpg")));
        assert!(!is_image_file(Path::new("b.gif")));
        assert!(!is_image_file(Path::new("jpg")));
    }
}
