//! Audio: WAV decoding (PCM 8/16/24/32-bit, float), resampling, fixed
//! duration, log-mel spectrograms (STFT through rustfft), labels from file names.

use super::cifar::{Member, tar_members};
use super::{DataError, Dataset, RawData};
use crate::ir::{AudioSpec, MelSpec};
use rayon::prelude::*;
use rustfft::num_complex::Complex32;
use std::collections::BTreeMap;
use std::path::Path;

/// Decoded audio: mono samples in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Wav {
    pub sample_rate: u32,
    pub samples: Vec<f32>,
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Parse a RIFF/WAVE file. Errors say what was expected (the caller names the file).
pub fn parse_wav(bytes: &[u8]) -> Result<Wav, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file (expected `RIFF....WAVE` at byte 0)".into());
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = le32(&bytes[pos + 4..pos + 8]) as usize;
        let body_start = pos + 8;
        if id == b"fmt " {
            if size < 16 || body_start + 16 > bytes.len() {
                return Err(format!("`fmt ` chunk at byte {pos} is truncated"));
            }
            let b = &bytes[body_start..];
            let mut tag = le16(b);
            if tag == 0xFFFE && size >= 26 && body_start + 26 <= bytes.len() {
                tag = le16(&b[24..]); // WAVE_FORMAT_EXTENSIBLE: sub-format GUID starts with the tag
            }
            fmt = Some((tag, le16(&b[2..]), le32(&b[4..]), le16(&b[14..])));
        } else if id == b"data" {
            let (tag, channels, rate, bits) = fmt.ok_or("`data` chunk before the `fmt ` chunk")?;
            let end = body_start.saturating_add(size);
            if end > bytes.len() {
                return Err(format!(
                    "`data` chunk at byte {pos} declares {size} bytes but only {} follow (truncated file)",
                    bytes.len() - body_start
                ));
            }
            return decode_samples(&bytes[body_start..end], tag, channels, rate, bits);
        }
        pos = body_start.saturating_add(size).saturating_add(size & 1);
    }
    Err("no `data` chunk found".into())
}

fn decode_samples(
    data: &[u8],
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
) -> Result<Wav, String> {
    if channels == 0 || rate == 0 {
        return Err(format!(
            "invalid format: {channels} channel(s) at {rate} Hz"
        ));
    }
    let decode: fn(&[u8]) -> f32 = match (tag, bits) {
        (1, 8) => |b| (b[0] as f32 - 128.0) / 128.0,
        (1, 16) => |b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0,
        (1, 24) => |b| (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
        (1, 32) => |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
        (3, 32) => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        (3, 64) => |b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
        (1 | 3, _) => return Err(format!("unsupported sample size {bits} bits")),
        _ => {
            return Err(format!(
                "audio format tag {tag} is not PCM; expected PCM (1) or IEEE float (3) samples"
            ));
        }
    };
    let width = bits as usize / 8;
    let frame = width * channels as usize;
    if data.len() < frame {
        return Err("zero-length audio: the `data` chunk holds no samples".into());
    }
    let samples = data
        .chunks_exact(frame)
        .map(|f| f.chunks_exact(width).map(decode).sum::<f32>() / channels as f32)
        .collect();
    Ok(Wav {
        sample_rate: rate,
        samples,
    })
}

/// Linear-interpolation resampling (enough for speech features at these rates).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let n = (samples.len() as f64 * to as f64 / from as f64).round() as usize;
    let step = from as f64 / to as f64;
    (0..n)
        .map(|i| {
            let t = i as f64 * step;
            let j = t.floor() as usize;
            let frac = (t - j as f64) as f32;
            let a = samples[j.min(samples.len() - 1)];
            let b = samples[(j + 1).min(samples.len() - 1)];
            a + (b - a) * frac
        })
        .collect()
}

pub fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}
pub fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// Centre frequency (Hz) of each mel band.
pub fn mel_centers(mel: &MelSpec) -> Vec<f64> {
    let top = hz_to_mel(mel.sample_rate as f64 / 2.0);
    (1..=mel.n_mels)
        .map(|i| mel_to_hz(top * i as f64 / (mel.n_mels + 1) as f64))
        .collect()
}

/// Triangular mel filters over the `n_fft / 2 + 1` power bins (HTK mel scale, 0 Hz to Nyquist).
pub fn mel_filterbank(mel: &MelSpec) -> Vec<Vec<f32>> {
    let bins = mel.n_fft / 2 + 1;
    let top = hz_to_mel(mel.sample_rate as f64 / 2.0);
    let edges: Vec<f64> = (0..mel.n_mels + 2)
        .map(|i| mel_to_hz(top * i as f64 / (mel.n_mels + 1) as f64))
        .collect();
    let bin_hz = mel.sample_rate as f64 / mel.n_fft as f64;
    (0..mel.n_mels)
        .map(|m| {
            let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            (0..bins)
                .map(|k| {
                    let f = k as f64 * bin_hz;
                    let w = if f <= lo || f >= hi {
                        0.0
                    } else if f <= mid {
                        (f - lo) / (mid - lo)
                    } else {
                        (hi - f) / (hi - mid)
                    };
                    w as f32
                })
                .collect()
        })
        .collect()
}

/// Reusable STFT plan, window and filters for one [`MelSpec`].
pub struct MelExtractor {
    spec: MelSpec,
    fft: std::sync::Arc<dyn rustfft::Fft<f32>>,
    window: Vec<f32>,
    /// Per band: first bin and weights (filters are sparse).
    filters: Vec<(usize, Vec<f32>)>,
}

impl MelExtractor {
    pub fn new(spec: MelSpec) -> Self {
        let fft = rustfft::FftPlanner::new().plan_fft_forward(spec.n_fft);
        let window = (0..spec.window)
            .map(|i| {
                let t = i as f32 / spec.window as f32;
                0.5 - 0.5 * (2.0 * std::f32::consts::PI * t).cos()
            })
            .collect();
        let filters = mel_filterbank(&spec)
            .into_iter()
            .map(|f| {
                let first = f.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = f.iter().rposition(|&w| w > 0.0).map_or(first, |l| l + 1);
                (first, f[first..last].to_vec())
            })
            .collect();
        MelExtractor {
            spec,
            fft,
            window,
            filters,
        }
    }

    /// Log-mel spectrogram `[n_mels, frames]` (row-major) of exactly `spec.samples()` samples.
    pub fn log_mel(&self, audio: &[f32]) -> Vec<f32> {
        let s = &self.spec;
        let n = s.samples();
        let frames = s.frames();
        let mut padded;
        let audio = if audio.len() >= n {
            &audio[..n]
        } else {
            padded = audio.to_vec();
            padded.resize(n.max(s.window), 0.0);
            &padded[..]
        };
        let mut out = vec![0f32; s.n_mels * frames];
        let mut buf = vec![Complex32::new(0.0, 0.0); s.n_fft];
        let mut scratch = vec![Complex32::new(0.0, 0.0); self.fft.get_inplace_scratch_len()];
        let mut power = vec![0f32; s.n_fft / 2 + 1];
        let floor = s.log_floor as f32;
        for t in 0..frames {
            let start = t * s.hop;
            buf.fill(Complex32::new(0.0, 0.0));
            for (i, w) in self.window.iter().enumerate() {
                buf[i].re = audio.get(start + i).copied().unwrap_or(0.0) * w;
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            for (p, c) in power.iter_mut().zip(&buf) {
                *p = c.norm_sqr();
            }
            for (m, (first, weights)) in self.filters.iter().enumerate() {
                let e: f32 = weights
                    .iter()
                    .zip(&power[*first..])
                    .map(|(w, p)| w * p)
                    .sum();
                out[m * frames + t] = (e + floor).ln();
            }
        }
        out
    }
}

/// `{a}_{b}.wav` split into literal text and field names.
enum Token {
    Lit(String),
    Field(String),
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        if open > 0 {
            out.push(Token::Lit(rest[..open].to_string()));
        }
        out.push(Token::Field(rest[open + 1..open + close].to_string()));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        out.push(Token::Lit(rest.to_string()));
    }
    out
}

/// Match a file name against a pattern; fields take the shortest non-empty text.
pub fn match_pattern(pattern: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let toks = tokens(pattern);
    let mut fields = BTreeMap::new();
    let mut rest = name;
    for (i, tok) in toks.iter().enumerate() {
        match tok {
            Token::Lit(l) => rest = rest.strip_prefix(l.as_str())?,
            Token::Field(f) => {
                let value = match toks.get(i + 1) {
                    Some(Token::Lit(next)) => {
                        let at = rest.get(1..)?.find(next.as_str())? + 1;
                        &rest[..at]
                    }
                    _ => rest,
                };
                if value.is_empty() {
                    return None;
                }
                fields.insert(f.clone(), value.to_string());
                rest = &rest[value.len()..];
            }
        }
    }
    rest.is_empty().then_some(fields)
}

/// The recordings of an audio data set: a tar(.gz), `fsdd.tar.gz` or a folder (recursive).
fn recordings(path: &Path) -> Result<(std::path::PathBuf, Vec<Member>), DataError> {
    if path.is_file() {
        return Ok((path.to_path_buf(), tar_members(path, ".wav")?));
    }
    let tarball = path.join("fsdd.tar.gz");
    if tarball.is_file() {
        return Ok((tarball.clone(), tar_members(&tarball, ".wav")?));
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let p = entry.map_err(|e| DataError::io(&dir, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")) {
                files.push(p);
            }
        }
    }
    files.sort();
    let members = files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).map_err(|e| DataError::io(&p, e))?;
            let name = p
                .strip_prefix(path)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            Ok(Member { name, bytes })
        })
        .collect::<Result<Vec<_>, DataError>>()?;
    Ok((path.to_path_buf(), members))
}

pub fn load(path: &Path, spec: &AudioSpec) -> Result<RawData, DataError> {
    let (source, members) = recordings(path)?;
    if members.is_empty() {
        return Err(DataError::format(
            &source,
            "whole archive",
            "holds no .wav recordings",
        ));
    }
    let label_field = if spec.label.is_empty() {
        spec.fields().first().cloned().unwrap_or_default()
    } else {
        spec.label.clone()
    };
    // Fields of every recording, from its base name.
    let mut infos = Vec::with_capacity(members.len());
    for m in &members {
        let base = m.name.rsplit('/').next().unwrap_or(&m.name);
        let fields = match_pattern(&spec.pattern, base).ok_or_else(|| {
            DataError::format(
                &source,
                format!("member {}", m.name),
                format!("file name does not match the pattern `{}`", spec.pattern),
            )
        })?;
        let is_test = match &spec.test_field {
            Some(f) => {
                let v = &fields[f];
                v.parse::<u64>().map_err(|_| {
                    DataError::format(
                        &source,
                        format!("member {}", m.name),
                        format!("field `{f}` is `{v}`, expected an integer (test_field)"),
                    )
                })? < spec.test_below
            }
            None => false,
        };
        infos.push((fields, is_test));
    }
    // Class index: the integer itself when every label is one, else sorted names.
    let labels: Vec<&str> = infos
        .iter()
        .map(|(f, _)| f[&label_field].as_str())
        .collect();
    let numeric: Option<Vec<u32>> = labels.iter().map(|l| l.parse().ok()).collect();
    let (y_all, class_names): (Vec<u32>, Vec<String>) = match numeric {
        Some(ys) => {
            let k = ys.iter().max().map_or(0, |m| m + 1);
            (ys, (0..k).map(|i| i.to_string()).collect())
        }
        None => {
            let mut names: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
            names.sort();
            names.dedup();
            let ys = labels
                .iter()
                .map(|l| names.binary_search(&l.to_string()).unwrap_or(0) as u32)
                .collect();
            (ys, names)
        }
    };
    let mut group_names: Vec<&str> = match &spec.group {
        Some(g) => infos.iter().map(|(f, _)| f[g].as_str()).collect(),
        None => Vec::new(),
    };
    group_names.sort_unstable();
    group_names.dedup();

    let mel = spec.mel;
    let extractor = MelExtractor::new(mel);
    let features: Vec<Vec<f32>> = members
        .par_iter()
        .map(|m| {
            let wav = parse_wav(&m.bytes)
                .map_err(|e| DataError::format(&source, format!("member {}", m.name), e))?;
            let samples = resample(&wav.samples, wav.sample_rate, mel.sample_rate);
            Ok(extractor.log_mel(&samples))
        })
        .collect::<Result<_, DataError>>()?;

    let mut train = Dataset {
        sample_shape: vec![1, mel.n_mels, mel.frames()],
        class_names,
        ..Default::default()
    };
    let mut test = train.clone();
    let mut train_groups = Vec::new();
    for (((fields, is_test), y), feat) in infos.iter().zip(y_all).zip(features) {
        let set = if *is_test { &mut test } else { &mut train };
        set.x.extend_from_slice(&feat);
        set.y.push(y);
        if let (Some(g), false) = (&spec.group, is_test) {
            let id = group_names.binary_search(&fields[g].as_str()).unwrap_or(0);
            train_groups.push(id as u32);
        }
    }
    Ok(RawData {
        train,
        test,
        train_groups,
    })
}

/// A mono WAV file for tests and tools (`tag` 1 = PCM, 3 = float).
pub fn encode_wav(rate: u32, tag: u16, bits: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * bits as u32 / 8).to_le_bytes());
    out.extend_from_slice(&(bits / 8).to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cifar::tests::tar_of;
    use crate::data::testutil::{gz, real_data, write};
    use crate::ir::DataSource;

    const RAMP: [f32; 4] = [0.0, 0.5, -0.5, -1.0];

    #[test]
    fn every_sample_format_decodes_to_the_same_values() {
        let pcm8: Vec<u8> = RAMP.iter().map(|v| (v * 128.0 + 128.0) as u8).collect();
        let pcm16: Vec<u8> = RAMP
            .iter()
            .flat_map(|v| ((v * 32768.0) as i16).to_le_bytes())
            .collect();
        let pcm24: Vec<u8> = RAMP
            .iter()
            .flat_map(|v| ((v * 8_388_608.0) as i32).to_le_bytes()[..3].to_vec())
            .collect();
        let pcm32: Vec<u8> = RAMP
            .iter()
            .flat_map(|v| ((*v as f64 * 2_147_483_648.0) as i32).to_le_bytes())
            .collect();
        let f32s: Vec<u8> = RAMP.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f64s: Vec<u8> = RAMP
            .iter()
            .flat_map(|v| (*v as f64).to_le_bytes())
            .collect();
        for (tag, bits, data) in [
            (1, 8, pcm8),
            (1, 16, pcm16),
            (1, 24, pcm24),
            (1, 32, pcm32),
            (3, 32, f32s),
            (3, 64, f64s),
        ] {
            let w = parse_wav(&encode_wav(8000, tag, bits, &data)).unwrap();
            assert_eq!(w.sample_rate, 8000);
            for (a, b) in w.samples.iter().zip(RAMP) {
                assert!(
                    (a - b).abs() < 1e-6,
                    "{bits}-bit tag {tag}: {:?}",
                    w.samples
                );
            }
            assert_eq!(w.samples.len(), 4);
        }
    }

    #[test]
    fn bad_wavs_are_rejected_with_reasons() {
        let e = parse_wav(&encode_wav(8000, 2, 4, &[1, 2, 3, 4])).unwrap_err();
        assert!(e.contains("not PCM"), "{e}");
        let e = parse_wav(&encode_wav(8000, 1, 16, &[])).unwrap_err();
        assert!(e.contains("zero-length"), "{e}");
        let e = parse_wav(b"RIFX....WAVEfmt ").unwrap_err();
        assert!(e.contains("not a RIFF/WAVE"), "{e}");
        let full = encode_wav(8000, 1, 16, &[0; 100]);
        let e = parse_wav(&full[..90]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn sine_energy_lands_in_the_nearest_mel_band() {
        let mel = MelSpec {
            sample_rate: 8000,
            duration: 0.5,
            window: 256,
            hop: 128,
            n_fft: 512,
            n_mels: 20,
            log_floor: 1e-6,
        };
        let centers = mel_centers(&mel);
        let ex = MelExtractor::new(mel);
        for freq in [300.0, 1000.0, 2500.0] {
            let sine: Vec<f32> = (0..mel.samples())
                .map(|i| (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin() as f32)
                .collect();
            let spec = ex.log_mel(&sine);
            let frames = mel.frames();
            let band_energy: Vec<f32> = (0..mel.n_mels)
                .map(|m| spec[m * frames..(m + 1) * frames].iter().sum::<f32>())
                .collect();
            let loudest = (0..mel.n_mels)
                .max_by(|&a, &b| band_energy[a].total_cmp(&band_energy[b]))
                .unwrap();
            let nearest = (0..mel.n_mels)
                .min_by(|&a, &b| {
                    (centers[a] - freq)
                        .abs()
                        .total_cmp(&(centers[b] - freq).abs())
                })
                .unwrap();
            assert_eq!(loudest, nearest, "{freq} Hz: centres {centers:?}");
        }
    }

    #[test]
    fn zero_padding_reads_as_the_log_floor() {
        for floor in [1e-6, 1e-10] {
            let mel = MelSpec {
                duration: 0.25,
                log_floor: floor,
                ..MelSpec::default()
            };
            // A short burst of noise, then the padding up to the duration.
            let burst: Vec<f32> = (0..300)
                .map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0)
                .collect();
            let spec = MelExtractor::new(mel).log_mel(&burst);
            let frames = mel.frames();
            let last = (0..mel.n_mels).map(|m| spec[m * frames + frames - 1]);
            for v in last {
                assert!((v - (floor as f32).ln()).abs() < 1e-4, "{v} vs ln {floor}");
            }
            assert!(
                spec[0] > (floor as f32).ln() + 5.0,
                "the burst is above the floor"
            );
        }
    }

    #[test]
    fn resampling_keeps_duration_and_shape() {
        let x: Vec<f32> = (0..1600).map(|i| i as f32).collect();
        let y = resample(&x, 16000, 8000);
        assert_eq!(y.len(), 800);
        assert_eq!(y[10], 20.0);
    }

    #[test]
    fn pattern_matching_extracts_fields() {
        let f = match_pattern("{digit}_{speaker}_{idx}.wav", "7_jackson_32.wav").unwrap();
        assert_eq!(
            (
                f["digit"].as_str(),
                f["speaker"].as_str(),
                f["idx"].as_str()
            ),
            ("7", "jackson", "32")
        );
        assert!(match_pattern("{digit}_{speaker}_{idx}.wav", "7_jackson.wav").is_none());
        assert!(match_pattern("{digit}_{speaker}_{idx}.wav", "7_jackson_3.mp3").is_none());
    }

    fn tone(freq: f32, n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                (((freq * i as f32 / 8000.0 * std::f32::consts::TAU).sin() * 20000.0) as i16)
                    .to_le_bytes()
            })
            .collect()
    }

    #[test]
    fn folder_and_tar_give_the_same_data_with_split_and_groups() {
        let spec = match crate::ir::DataSpec::named("fsdd").unwrap().source {
            DataSource::Fsdd(a) => a,
            _ => unreachable!(),
        };
        let names = [
            "0_ann_0.wav",
            "0_ann_7.wav",
            "1_bob_2.wav",
            "1_bob_9.wav",
            "1_ann_8.wav",
        ];
        let members: Vec<(&str, Vec<u8>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    *n,
                    encode_wav(8000, 1, 16, &tone(200.0 * (i + 1) as f32, 3000)),
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        for (n, b) in &members {
            write(&dir.path().join("recordings"), n, b);
        }
        let with_prefix: Vec<(String, Vec<u8>)> = members
            .iter()
            .map(|(n, b)| (format!("recordings/{n}"), b.clone()))
            .collect();
        let refs: Vec<(&str, Vec<u8>)> = with_prefix
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect();
        let tarball = write(dir.path(), "t/fsdd.tar.gz", &gz(&tar_of(&refs)));
        let a = load(&dir.path().join("recordings"), &spec).unwrap();
        let b = load(&tarball, &spec).unwrap();
        assert_eq!(a, b);
        // idx 0 and 2 are test (idx < 5).
        assert_eq!(a.test.y, [0, 1]);
        assert_eq!(a.train.y, [0, 1, 1]);
        assert_eq!(a.train_groups, [0, 0, 1]); // ann, ann, bob (sorted names)
        assert_eq!(a.train.sample_shape, [1, 32, 61]);

        let bad = tar_of(&[("recordings/0_ann_1.wav", encode_wav(8000, 1, 16, &[]))]);
        let p = write(dir.path(), "bad.tar", &bad);
        let e = load(&p, &spec).unwrap_err().to_string();
        assert!(
            e.contains("bad.tar: member recordings/0_ann_1.wav: zero-length"),
            "{e}"
        );
        let odd = tar_of(&[("recordings/hello.wav", encode_wav(8000, 1, 16, &[0; 4]))]);
        let p = write(dir.path(), "odd.tar", &odd);
        let e = load(&p, &spec).unwrap_err().to_string();
        assert!(
            e.contains("member recordings/hello.wav: file name does not match"),
            "{e}"
        );
    }

    #[test]
    #[cfg_attr(
        not(pnnc_data_fsdd),
        ignore = "needs the FSDD data set: ../shared/data/fsdd or $PNN_DATA/fsdd"
    )]
    fn real_fsdd_counts() {
        let dir = real_data("fsdd");
        // Counts from the names (decoding all 3,000 is the benchmark's job).
        let members = tar_members(&dir.join("fsdd.tar.gz"), ".wav").unwrap();
        let mut hist = [[0usize; 10]; 2];
        for m in &members {
            let f = match_pattern(
                "{digit}_{speaker}_{idx}.wav",
                m.name.rsplit('/').next().unwrap(),
            )
            .unwrap();
            let test = f["idx"].parse::<u32>().unwrap() < 5;
            hist[test as usize][f["digit"].parse::<usize>().unwrap()] += 1;
        }
        assert_eq!(hist, [[270; 10], [30; 10]]);
        let w = parse_wav(&members[0].bytes).unwrap();
        assert_eq!(w.sample_rate, 8000);
    }
}
