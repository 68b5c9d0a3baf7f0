//! What the service has acknowledged of an import: kept after every
//! acknowledged message in a file beside the input (`<file>.import-progress`),
//! so `import --resume` starts after it, and read by the command line to say
//! what was stored when an import stops for any reason.
use std::path::{Path, PathBuf};

use association_service::proto::ImportAssociationBatchesResponse;
use serde::{Deserialize, Serialize};

use super::{rows, TransferError};

/// An import's acknowledged rows, counted over every run of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// The portal imported into.
    pub portal: i64,
    /// The input's size when the import began (a resume refuses another).
    pub file_size: u64,
    /// Every row at or before this line was stored or failed.
    pub through_line: u64,
    /// Rows acknowledged: created, held already, or failed.
    pub rows: u64,
    pub created: u64,
    pub already_present: u64,
    pub failed: u64,
    /// (line, message) of the failures the service listed.
    pub errors: Vec<(u64, String)>,
}

impl Stored {
    /// Counts in one answer of the service: its rows, and its failures with
    /// their lines.
    pub fn add(&mut self, answer: &ImportAssociationBatchesResponse) {
        self.rows += answer.rows;
        self.created += answer.created;
        self.already_present += answer.already_present;
        self.failed += answer.failed;
        self.through_line = self.through_line.max(answer.last_line);
        self.errors.extend(answer.errors.iter().map(|e| {
            let message = e
                .error
                .as_ref()
                .map(|e| format!("{} {}: {}", e.category, e.sub_category, e.message));
            (e.line, message.unwrap_or_default())
        }));
    }

    /// Where the progress of importing `file` is kept.
    pub fn path_for(file: &Path) -> PathBuf {
        let mut name = file.as_os_str().to_owned();
        name.push(".import-progress");
        PathBuf::from(name)
    }

    /// The progress kept for `file`, if any.
    pub fn load(file: &Path) -> Result<Option<Stored>, TransferError> {
        let path = Stored::path_for(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(TransferError::File {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|err| TransferError::Unreadable {
                path: path.display().to_string(),
                reason: format!("not an import's progress: {err}"),
            })
    }

    /// Keeps this progress for `file` (written whole, then renamed over the
    /// last one, so a crash leaves one or the other).
    pub fn save(&self, file: &Path) -> Result<(), TransferError> {
        let path = Stored::path_for(file);
        let fresh = {
            let mut name = path.as_os_str().to_owned();
            name.push(".new");
            PathBuf::from(name)
        };
        let text = serde_json::to_string(self).expect("progress serializes");
        std::fs::write(&fresh, text)
            .and_then(|()| std::fs::rename(&fresh, &path))
            .map_err(|source| TransferError::File {
                path: path.display().to_string(),
                source,
            })
    }

    /// Forgets the progress of a finished import.
    pub fn remove(file: &Path) {
        let _ = std::fs::remove_file(Stored::path_for(file));
    }

    /// For people: `N rows acknowledged through line L (C created, A
    /// already present, F failed)`.
    pub fn describe(&self) -> String {
        format!(
            "{} acknowledged through line {} ({} created, {} already present, {} failed)",
            rows(self.rows),
            self.through_line,
            self.created,
            self.already_present,
            self.failed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_kept_beside_the_file_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rows.csv");
        assert_eq!(
            Stored::path_for(&file),
            dir.path().join("rows.csv.import-progress")
        );
        assert_eq!(Stored::load(&file).unwrap(), None);
        let stored = Stored {
            portal: 7,
            file_size: 1234,
            through_line: 2001,
            rows: 2000,
            created: 1990,
            already_present: 8,
            failed: 2,
            errors: vec![(17, "no such label".into()), (18, "no such label".into())],
        };
        stored.save(&file).unwrap();
        assert_eq!(Stored::load(&file).unwrap(), Some(stored.clone()));
        assert_eq!(
            stored.describe(),
            "2000 rows acknowledged through line 2001 (1990 created, 8 already present, 2 failed)"
        );
        Stored::remove(&file);
        assert_eq!(Stored::load(&file).unwrap(), None);
    }
}
