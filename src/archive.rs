//! The archive of one closed reporting month (`archive`): one file, a gzip-compressed tar, because one
//! `--to FILE` should be one artefact that finance and operations open with what they have
//! (`tar xzf`, 7-Zip, Windows' and macOS's own archive tools). It holds a folder
//! `recon-YYYY-MM/` with
//!
//! - `manifest.json` (first, so a reader meets it before the data): the reporting month, its
//!   zone (`recon.timezone`) and bounds in that zone, when the archive was made, the schema
//!   version, and per table its file, time column, columns with their types, row count, size
//!   and the SHA-256 of its CSV;
//! - `status_transitions.csv`, `discrepancies.csv`, `events.csv`: PostgreSQL's own CSV of
//!   every row of the month (`COPY … (format csv, header)`, see
//!   [`crate::store::archive::MonthSnapshot::copy_csv`]).
//!
//! Each CSV is staged in an unnamed temporary file beside FILE while the database streams it
//! (a tar entry's size comes before its bytes), hashed on the way; the archive is written
//! under a temporary name in FILE's directory and renamed to FILE only when complete and
//! synced, so a failure never leaves a partial FILE. The staging needs the month's
//! uncompressed size free in that directory for a moment. FILE is readable by its owner only
//! (the temporary file's mode, kept by the rename): raw provider bodies are in it.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek as _, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::store::archive::{Column, HISTORY, HistoryTable, Month, MonthSnapshot, MonthState};

/// What the manifest's `format` says: a reader checks it before anything else.
/// Version 2: the month is a reporting month in `timezone` (version 1's was a UTC month).
pub const FORMAT: &str = "freedompay-recon month archive, version 2";

/// How the CSV files are written, for whoever opens them.
pub const CSV_DIALECT: &str = "PostgreSQL COPY CSV with a header row: comma-separated, UTF-8, \
     fields with commas, quotes or line breaks in double quotes; NULL is an empty unquoted \
     field, empty text is \"\"; timestamps ISO 8601 in UTC (+00); numbers exact; json as stored";

/// The archive's table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// `YYYY-MM`: a reporting month, its days calendar days in `timezone`.
    pub month: String,
    /// The reporting zone (`recon.timezone`) the month is in.
    pub timezone: String,
    /// The month's first instant and the next month's (exclusive), RFC 3339 with the
    /// zone's offset (`2026-11-01T00:00:00+05:00`).
    pub from: String,
    pub to: String,
    pub created_at: String,
    /// The last migration applied to the database the rows came from.
    pub schema_version: i64,
    pub csv: String,
    pub tables: Vec<TableEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// `recon.status_transitions`.
    pub table: String,
    /// The entry's name inside the archive's folder.
    pub file: String,
    /// The rows are those whose time column is within [from, to).
    pub time_column: String,
    pub columns: Vec<ColumnEntry>,
    /// Data rows (the header not counted).
    pub rows: u64,
    /// The CSV's size, uncompressed.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the CSV, uncompressed.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

impl From<Column> for ColumnEntry {
    fn from(c: Column) -> Self {
        Self {
            name: c.name,
            type_name: c.type_name,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{0} exists; give another file, or --force to replace it")]
    Exists(String),
    #[error("{path} does not hold what was written: {problem}")]
    Mismatch { path: String, problem: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The folder inside the archive: extracting it makes one folder, not loose files.
pub fn folder(month: Month) -> String {
    format!("recon-{month}")
}

/// One month read out of the database, staged beside FILE: the manifest and each table's CSV
/// (unnamed temporary files, gone when dropped), ready for [`write`].
pub struct Export {
    pub month: Month,
    pub manifest: Manifest,
    staged: Vec<File>,
}

/// Reads the month's three tables in `snapshot` (whose state `state` is) into CSV files
/// staged in `dir`, hashing them as they come.
pub async fn export(
    snapshot: &mut MonthSnapshot,
    state: &MonthState,
    dir: &Path,
) -> Result<Export, ArchiveError> {
    let month = snapshot.month();
    let mut tables = Vec::with_capacity(HISTORY.len());
    let mut staged = Vec::with_capacity(HISTORY.len());
    for (table, &rows) in HISTORY.iter().zip(&state.rows) {
        let columns = snapshot.columns(table).await?;
        let file = tempfile::tempfile_in(dir).map_err(io_error(dir))?;
        let mut out = Hashing::new(BufWriter::with_capacity(256 * 1024, file));
        snapshot
            .copy_csv(table, &mut out)
            .await
            .map_err(|e| match e {
                crate::store::archive::CopyError::Store(e) => ArchiveError::Store(e),
                crate::store::archive::CopyError::Write(e) => io_error(dir)(e),
            })?;
        let (writer, sha256, bytes) = out.finish();
        let file = writer
            .into_inner()
            .map_err(|e| io_error(dir)(e.into_error()))?;
        tables.push(entry(table, columns, rows, bytes, sha256));
        staged.push(file);
    }
    let bounds = snapshot.bounds();
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        month: month.to_string(),
        timezone: bounds.zone.clone(),
        from: bounds
            .from
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        to: bounds
            .to
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        created_at: rfc3339(state.now),
        schema_version: state.schema_version,
        csv: CSV_DIALECT.to_owned(),
        tables,
    };
    Ok(Export {
        month,
        manifest,
        staged,
    })
}

fn entry(
    table: &HistoryTable,
    columns: Vec<Column>,
    rows: i64,
    bytes: u64,
    sha256: String,
) -> TableEntry {
    TableEntry {
        table: format!("recon.{}", table.name),
        file: format!("{}.csv", table.name),
        time_column: table.time_column.to_owned(),
        columns: columns.into_iter().map(ColumnEntry::from).collect(),
        rows: u64::try_from(rows).unwrap_or(0),
        bytes,
        sha256,
    }
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Writes the archive to `path` (blocking: run it off the async threads): under a temporary
/// name in the same directory, synced, then renamed into place; an existing `path` is
/// refused unless `replace`. Returns the archive's size.
pub fn write(path: &Path, export: Export, replace: bool) -> Result<u64, ArchiveError> {
    let dir = directory(path);
    let temporary = tempfile::Builder::new()
        .prefix(".recon-archive-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(io_error(&dir))?;
    let mtime = chrono::DateTime::parse_from_rfc3339(&export.manifest.created_at)
        .map(|t| u64::try_from(t.timestamp()).unwrap_or(0))
        .unwrap_or(0);
    let gz = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(256 * 1024, temporary.as_file()),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    let folder = folder(export.month);
    let manifest = serde_json::to_vec_pretty(&export.manifest)
        .map_err(|e| io_error(path)(io::Error::other(e)))?;
    append(
        &mut tar,
        &format!("{folder}/manifest.json"),
        manifest.len() as u64,
        mtime,
        &manifest[..],
    )
    .map_err(io_error(path))?;
    for (entry, mut file) in export.manifest.tables.iter().zip(export.staged) {
        file.rewind().map_err(io_error(&dir))?;
        append(
            &mut tar,
            &format!("{folder}/{}", entry.file),
            entry.bytes,
            mtime,
            io::BufReader::with_capacity(256 * 1024, file),
        )
        .map_err(io_error(path))?;
    }
    let gz = tar.into_inner().map_err(io_error(path))?;
    let mut buffered = gz.finish().map_err(io_error(path))?;
    buffered.flush().map_err(io_error(path))?;
    drop(buffered);
    temporary.as_file().sync_all().map_err(io_error(path))?;
    let size = temporary
        .as_file()
        .metadata()
        .map_err(io_error(path))?
        .len();
    let persisted = if replace {
        temporary.persist(path)
    } else {
        temporary.persist_noclobber(path)
    };
    match persisted {
        Ok(_) => Ok(size),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            Err(ArchiveError::Exists(path.display().to_string()))
        }
        Err(e) => Err(io_error(path)(e.error)),
    }
}

/// One regular file in the tar, owned by nobody in particular, readable by all.
fn append(
    tar: &mut tar::Builder<impl Write>,
    name: &str,
    size: u64,
    mtime: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    tar.append_data(&mut header, name, data)
}

/// The directory a FILE is written in (`.` for a bare file name).
pub fn directory(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads the archive of `month` at `path` back (blocking) and checks it against `expected`: the manifest
/// it holds is the one written, and each CSV, decompressed and parsed, has the manifest's
/// header, row count, size and SHA-256, in order, with nothing else in the archive.
pub fn verify(path: &Path, month: Month, expected: &Manifest) -> Result<(), ArchiveError> {
    let mismatch = |problem: String| ArchiveError::Mismatch {
        path: path.display().to_string(),
        problem,
    };
    let file = File::open(path).map_err(io_error(path))?;
    let gz = flate2::read::GzDecoder::new(io::BufReader::with_capacity(256 * 1024, file));
    let mut tar = tar::Archive::new(gz);
    let mut entries = tar.entries().map_err(io_error(path))?;
    let folder = folder(month);
    let mut json = Vec::new();
    next_entry(&mut entries, path, &folder, "manifest.json")?
        .read_to_end(&mut json)
        .map_err(io_error(path))?;
    let manifest: Manifest = serde_json::from_slice(&json)
        .map_err(|e| mismatch(format!("manifest.json does not parse: {e}")))?;
    if &manifest != expected {
        return Err(mismatch(
            "manifest.json differs from the one written".into(),
        ));
    }
    for table in &manifest.tables {
        let entry = next_entry(&mut entries, path, &folder, &table.file)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(Hashing::new(entry));
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| mismatch(format!("{}: {e}", table.file)))?
            .iter()
            .map(str::to_owned)
            .collect();
        let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        if header != columns {
            return Err(mismatch(format!(
                "{}: its header is {header:?}, not the manifest's columns",
                table.file
            )));
        }
        let mut rows = 0u64;
        let mut record = csv::ByteRecord::new();
        while reader
            .read_byte_record(&mut record)
            .map_err(|e| mismatch(format!("{}: {e}", table.file)))?
        {
            rows += 1;
        }
        let mut hashing = reader.into_inner();
        io::copy(&mut hashing, &mut io::sink()).map_err(io_error(path))?;
        let (_, sha256, bytes) = hashing.finish();
        if (rows, bytes, sha256.as_str()) != (table.rows, table.bytes, table.sha256.as_str()) {
            return Err(mismatch(format!(
                "{}: {rows} rows, {bytes} bytes, SHA-256 {sha256}; the manifest says {} rows, \
                 {} bytes, SHA-256 {}",
                table.file, table.rows, table.bytes, table.sha256
            )));
        }
    }
    if let Some(extra) = entries.next() {
        let extra = extra.map_err(io_error(path))?;
        let name = extra.path().map_err(io_error(path))?.display().to_string();
        return Err(mismatch(format!("{name} is not in the manifest")));
    }
    Ok(())
}

/// The archive's next entry, which must be `name` in `folder`.
fn next_entry<'a, R: Read>(
    entries: &mut tar::Entries<'a, R>,
    path: &Path,
    folder: &str,
    name: &str,
) -> Result<tar::Entry<'a, R>, ArchiveError> {
    let mismatch = |problem: String| ArchiveError::Mismatch {
        path: path.display().to_string(),
        problem,
    };
    let entry = entries
        .next()
        .ok_or_else(|| mismatch(format!("{name} is missing")))?
        .map_err(io_error(path))?;
    let found = entry.path().map_err(io_error(path))?.display().to_string();
    let wanted = format!("{folder}/{name}");
    if found != wanted {
        return Err(mismatch(format!("{found} where {wanted} was expected")));
    }
    Ok(entry)
}

/// A reader or writer that hashes (SHA-256) and counts the bytes passing through it.
struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    bytes: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner reader or writer, the lowercase hex digest and the byte count.
    fn finish(self) -> (T, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.bytes)
    }

    fn saw(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.saw(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.saw(&buf[..n]);
        Ok(n)
    }
}
