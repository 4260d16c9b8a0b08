//! The ImageFolder dataset layout MindCV uses (MindSpore's `ImageFolderDataset` on
//! `data_dir/split`): one sub-folder per class, class index = position of the folder name in sorted
//! order, or as given by a class map file; and [`list_images`] for loose files.
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
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
    /// leaves undefined). A folder name that is not UTF-8 is shown lossily (U+FFFD for each
    /// invalid byte); the samples' paths keep the exact bytes.
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
    /// Folder and file names may be any bytes (they are kept as `OsString`s, never converted to
    /// UTF-8 on the way). An entry with an image extension that is not a regular file (a FIFO,
    /// a device, a dangling link) is listed, not skipped: reading it is an error naming it.
    ///
    /// Errors: [`Error::Io`] naming `data_dir/split` when it cannot be read (missing, not a
    /// folder) or the class map file; [`Error::Format`] for a malformed class map line;
    /// [`Error::Config`] naming a class folder absent from the class map, or when no image is found.
    pub fn open(data_dir: &Path, split: &str, class_map: Option<&Path>) -> Result<ImageFolder> {
        let root = data_dir.join(split);
        let folders = class_folders(&root)?;

        let shown = |f: &OsStr| f.to_string_lossy().into_owned();
        let (classes, class_names, labels) = match class_map {
            Some(map) => {
                let (classes, names) = read_class_map(map)?;
                let index: HashMap<&OsStr, usize> = classes
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.is_empty())
                    .map(|(i, c)| (OsStr::new(c.as_str()), i))
                    .collect();
                let mut labels = Vec::with_capacity(folders.len());
                for folder in &folders {
                    let label = *index.get(folder.as_os_str()).ok_or_else(|| {
                        Error::Config(format!(
                            "class folder '{}' in {} is not in the class map {}",
                            shown(folder),
                            root.display(),
                            map.display()
                        ))
                    })?;
                    labels.push(label);
                }
                (classes, names, labels)
            }
            None => {
                let names: Vec<String> = folders.iter().map(|f| shown(f)).collect();
                (names.clone(), names, (0..folders.len()).collect())
            }
        };

        let mut samples: Vec<(usize, OsString, PathBuf)> = Vec::new();
        for (folder, &label) in folders.iter().zip(&labels) {
            let dir = root.join(folder);
            for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let path = entry.path();
                // Not skipped when it is a FIFO, a device or a dangling link: reading it then
                // fails with an error naming it (never a silent skip, never a blocked read).
                if is_image_file(&path) && !path.is_dir() {
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
pub fn class_folders(dir: &Path) -> Result<Vec<OsString>> {
    // Folder names as the file system has them (any bytes), sorted by those bytes.
    let mut folders: Vec<OsString> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.path().is_dir() {
            folders.push(entry.file_name());
        }
    }
    folders.sort();
    Ok(folders)
}

/// Reads a class map file: one class folder name per line (index = line number), or the TSV
/// `index<TAB>folder[<TAB>name]` of `imagenet_classes.tsv`. Returns `(folder name per index,
/// human name per index)`; the human name is the folder name where the file gives none. The
/// file is read with [`crate::fsutil::read_text`] (regular files only) and parsed by
/// [`parse_class_map`].
/// Errors: [`Error::Io`] naming an unreadable or non-regular file, [`Error::Format`] for a
/// malformed line or an index of [`crate::model::MAX_CLASSES`] or more.
pub fn read_class_map(path: &Path) -> Result<(Vec<String>, Vec<String>)> {
    parse_class_map(path, &crate::fsutil::read_text(path)?)
}

/// Parses the text of a class map (see [`read_class_map`]); `path` names it in errors. A TSV
/// index must be below [`crate::model::MAX_CLASSES`] (the largest model senet builds), so the
/// tables are never sized by an arbitrary number from the file.
/// Errors: [`Error::Format`] naming `path` and the line.
pub fn parse_class_map(path: &Path, text: &str) -> Result<(Vec<String>, Vec<String>)> {
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
    let max = crate::model::MAX_CLASSES;
    if !lines.iter().any(|(_, l)| l.contains('\t')) {
        if lines.len() > max {
            return Err(Error::format(
                path,
                format!(
                    "{} classes, more than the {max} senet supports",
                    lines.len()
                ),
            ));
        }
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
        if idx >= max {
            return Err(Error::format(
                path,
                format!(
                    "line {}: class index {idx} is out of range (senet supports at most {max} \
                     classes, indices 0..={})",
                    n + 1,
                    max - 1
                ),
            ));
        }
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
    // Indices are below MAX_CLASSES: the tables hold at most that many (empty) names.
    let num = entries.iter().map(|e| e.0).max().unwrap_or(0) + 1;
    let what = || format!("the class table of {}", path.display());
    let mut classes = crate::mem::filled(num, String::new(), what)?;
    let mut names = crate::mem::filled(num, String::new(), what)?;
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
/// recursively (following symbolic links), sorted by path. Arguments keep their order.
///
/// Each folder is walked once per argument: a folder met again through a symbolic link (a link
/// to an ancestor making a loop, or a second link to the same folder) is recognised by its
/// (device, inode) and not walked again, so every image is listed once. An entry with an image
/// extension that is not a regular file (a FIFO, a device, a dangling link) is listed, so that
/// reading it reports it instead of skipping it silently.
///
/// Errors: [`Error::Io`] naming a path that does not exist or a folder that cannot be read.
pub fn list_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
        if meta.is_dir() {
            let mut found = walk(p)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The identity of the folder at `path` (symbolic links followed): (device, inode) on Unix, the
/// canonical path elsewhere.
#[cfg(unix)]
fn folder_id(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    Ok((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn folder_id(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| Error::io(path, e))
}

/// The image files below `root` (see [`list_images`]), unsorted; an explicit stack, so a deep
/// tree cannot exhaust the call stack.
fn walk(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut walked = HashSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if !walked.insert(folder_id(&dir)?) {
            continue; // already walked through another path
        }
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            entries.push(entry.map_err(|e| Error::io(&dir, e))?.path());
        }
        // Depth first in name order, so which of two paths to one folder is kept does not
        // depend on the order the file system lists them in.
        entries.sort();
        for path in entries.into_iter().rev() {
            if path.is_dir() {
                pending.push(path);
            } else if is_image_file(&path) {
                found.push(path);
            }
        }
    }
    Ok(found)
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
