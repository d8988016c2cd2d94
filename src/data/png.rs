//! A minimal PNG writer for `pnnc data inspect` previews (8-bit grey or RGB,
//! zlib through flate2). Only what a preview grid needs.

use super::Dataset;
use std::io::Write;

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// Encode `pixels` (rows of `width * channels` bytes), channels 1 or 3.
pub fn encode(width: u32, height: u32, channels: u8, pixels: &[u8]) -> Vec<u8> {
    let row = width as usize * channels as usize;
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for r in pixels.chunks_exact(row) {
        raw.push(0); // filter: none
        raw.extend_from_slice(r);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = z.write_all(&raw);
    let idat = z.finish().unwrap_or_default();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, if channels == 3 { 2 } else { 0 }, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A grid of the first `count` images of an image set (`[1|3, h, w]`), scaled
/// to the set's value range; None for non-image shapes.
pub fn preview_grid(set: &Dataset, count: usize, per_row: usize) -> Option<Vec<u8>> {
    let [c, h, w] = set.sample_shape[..] else {
        return None;
    };
    if !(c == 1 || c == 3) || set.is_empty() || per_row == 0 {
        return None;
    }
    let count = count.min(set.len());
    let rows = count.div_ceil(per_row);
    let cols = count.min(per_row);
    let (lo, hi) = set
        .x
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    let (gw, gh) = (cols * w, rows * h);
    let mut px = vec![0u8; gw * gh * c];
    for i in 0..count {
        let s = set.sample(i);
        let (ox, oy) = ((i % per_row) * w, (i / per_row) * h);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let v = (s[ch * h * w + y * w + x] - lo) * scale;
                    px[((oy + y) * gw + ox + x) * c + ch] = v.clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    Some(encode(gw as u32, gh as u32, c as u8, &px))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_valid_structure_and_pixels() {
        let set = Dataset {
            sample_shape: vec![1, 2, 2],
            x: vec![0.0, 1.0, 0.5, 0.25, 1.0, 1.0, 1.0, 1.0],
            y: vec![0, 1],
            class_names: vec!["a".into(), "b".into()],
        };
        let png = preview_grid(&set, 2, 2).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 4); // width
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 2); // height
        // IDAT inflates to 2 rows of (filter byte + 4 pixels).
        let len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::ZlibDecoder::new(&png[41..41 + len]),
            &mut raw,
        )
        .unwrap();
        assert_eq!(raw, [0, 0, 255, 255, 255, 0, 127, 63, 255, 255]);
        assert!(png.ends_with(&[0xae, 0x42, 0x60, 0x82])); // IEND CRC
        assert!(
            preview_grid(
                &Dataset {
                    sample_shape: vec![6, 4],
                    ..Default::default()
                },
                1,
                1
            )
            .is_none()
        );
    }
}
