//! Import files come from other systems' exports and from spreadsheets:
//! reading any bytes as CSV or JSON Lines never panics and its line numbers
//! only go forward; the rows read, written by the export's writer in either
//! format, read back as the same rows (an export imports as it was).
#![no_main]
use association_service::files::{read_rows, FileRow, Format, RowWriter};
use libfuzzer_sys::fuzz_target;

fn read(bytes: &[u8], format: Format) -> Vec<(u64, Result<FileRow, String>)> {
    let mut rows = Vec::new();
    let mut last = 0;
    let _ = read_rows(bytes, format, |line, row| {
        assert!(line >= last, "line {line} after {last}");
        last = line;
        rows.push((line, row));
        true
    });
    rows
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let format = if first % 2 == 0 {
        Format::Csv
    } else {
        Format::Jsonl
    };
    let rows: Vec<FileRow> = read(rest, format)
        .into_iter()
        .filter_map(|(_, row)| row.ok())
        .collect();
    if rows.is_empty() {
        return;
    }
    for format in [Format::Csv, Format::Jsonl] {
        let mut written = Vec::new();
        let mut writer = RowWriter::new(format, &mut written);
        for row in &rows {
            writer.write(row).expect("a row writes");
        }
        writer.finish().expect("the rows flush");
        let again: Vec<FileRow> = read(&written, format)
            .into_iter()
            .map(|(line, row)| row.unwrap_or_else(|e| panic!("line {line} of {format:?}: {e}")))
            .collect();
        assert_eq!(
            again,
            rows,
            "{format:?}: {}",
            String::from_utf8_lossy(&written)
        );
    }
});
