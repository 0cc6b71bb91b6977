//! Offline audio analysis. WAV: the RIFF/WAVE container and its PCM (8-, 16-, 24-, 32-bit
//! integer) or IEEE float (32-, 64-bit) samples are read by hand, then duration, loudness (RMS
//! and peak in dBFS) and silent stretches are measured. MP3 (and MP2/MP1): frame headers are
//! walked by [`mp3`](crate::codecs::mp3) for the exact duration, sample rate, channels and
//! bitrate; loudness would need a decoder, so it is left out (`loudness: null`). All on the
//! blocking pool.

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::codecs::base64;
use crate::codecs::mp3::{Mp3Info, looks_like_mp3, parse_mp3};
use crate::support::blocking::{checkpoint, run_blocking};
use crate::support::params_schema as schema;
use crate::support::round::round3;

/// Largest audio file accepted (decoded bytes). The node's 1 MiB param limit is far below it;
/// this keeps the work bounded if that limit is raised.
pub const MAX_AUDIO_BYTES: usize = 64 << 20;

/// Loudness reported for digital silence, instead of minus infinity (JSON has no infinities).
pub const FLOOR_DBFS: f64 = -120.0;

/// Length of the windows whose loudness decides what is silent.
const WINDOW_MS: f64 = 10.0;

/// `multimodal.audio.analyze` (worker kind audio):
/// `{"audio_base64": "<WAV or MP3>", "silence_threshold_db": -50, "min_silence_ms": 300}` ->
/// [`AudioAnalysis`].
pub struct AudioAnalyze;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AudioParams {
    audio_base64: String,
    #[serde(default = "default_threshold")]
    silence_threshold_db: f64,
    #[serde(default = "default_min_silence")]
    min_silence_ms: u64,
}

fn default_threshold() -> f64 {
    -50.0
}

fn default_min_silence() -> u64 {
    300
}

/// What [`AudioAnalyze`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioAnalysis {
    /// `wav` or `mp3` (also for MP2/MP1 streams; see `encoding`).
    pub format: String,
    /// Sample encoding, named as ffmpeg names it: `pcm_u8`, `pcm_s16le`, `pcm_s24le`,
    /// `pcm_s32le`, `pcm_f32le`, `pcm_f64le`, `mp3`, `mp2` or `mp1`.
    pub encoding: String,
    /// Bits per sample (WAV only).
    pub bits_per_sample: Option<u16>,
    /// Frames per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// Sample frames (one sample per channel each).
    pub frames: u64,
    /// Seconds.
    pub duration_s: f64,
    /// Average bitrate in kbit/s.
    pub bitrate_kbps: f64,
    /// Set when the file ends inside its data (a cut or streamed file); what is present was
    /// analysed.
    pub truncated: bool,
    /// Loudness and silences (WAV only: MP3 would need decoding).
    pub loudness: Option<Loudness>,
    /// MPEG stream details (MP3 only).
    pub mpeg: Option<MpegDetails>,
}

/// Loudness of decoded samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loudness {
    /// Root mean square of all samples in dB relative to full scale (floored at -120).
    pub rms_dbfs: f64,
    /// Largest absolute sample, 1.0 = full scale (float files may exceed it).
    pub peak: f64,
    /// `peak` in dBFS (floored at -120).
    pub peak_dbfs: f64,
    /// Stretches quieter than the threshold for at least the minimum length.
    pub silences: Vec<Silence>,
    /// Their total length in seconds.
    pub silence_total_s: f64,
}

/// What the MPEG frame walk found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MpegDetails {
    /// MPEG version: `1`, `2` or `2.5`.
    pub version: String,
    /// Layer: 1, 2 or 3.
    pub layer: u8,
    /// Audio frames (a Xing/Info/VBRI header frame is not counted).
    pub mpeg_frames: u64,
    /// Frames do not all have the same bitrate.
    pub vbr: bool,
    /// Bytes between frames that were not frames (tags excluded).
    pub skipped_bytes: u64,
}

/// One silent stretch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Start in seconds.
    pub start_s: f64,
    /// End in seconds.
    pub end_s: f64,
    /// Length in seconds.
    pub duration_s: f64,
}

#[async_trait]
impl Executor for AudioAnalyze {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["audio_base64"],
            &[
                ("audio_base64", schema::base64("a WAV or MP3 file")),
                (
                    "silence_threshold_db",
                    schema::number(-120.0, 0.0, -50.0, "windows quieter than this (dBFS) are silent"),
                ),
                (
                    "min_silence_ms",
                    schema::integer(10, 3_600_000, 300, "shortest silence reported"),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        let seconds = |what| json!({ "type": "number", "minimum": 0, "description": what });
        let silence = schema::record(&[
            ("start_s", seconds("start")),
            ("end_s", seconds("end")),
            ("duration_s", seconds("length")),
        ]);
        let dbfs = |what| json!({ "type": "number", "minimum": FLOOR_DBFS, "description": what });
        let loudness = schema::record(&[
            ("rms_dbfs", dbfs("root mean square in dBFS")),
            (
                "peak",
                json!({ "type": "number", "minimum": 0, "description": "largest absolute sample, 1 = full scale" }),
            ),
            ("peak_dbfs", dbfs("the peak in dBFS")),
            (
                "silences",
                schema::array(silence, "stretches quieter than the threshold"),
            ),
            ("silence_total_s", seconds("their total length")),
        ]);
        let mpeg = schema::record(&[
            ("version", schema::one_of(&["1", "2", "2.5"], "MPEG version")),
            ("layer", schema::int_range(1, 3, "layer")),
            ("mpeg_frames", schema::count("audio frames")),
            ("vbr", schema::boolean("frames differ in bitrate")),
            (
                "skipped_bytes",
                schema::count("bytes between frames that were not frames"),
            ),
        ]);
        Some(schema::record(&[
            ("format", schema::one_of(&["wav", "mp3"], "the container")),
            (
                "encoding",
                schema::one_of(
                    &[
                        "pcm_u8",
                        "pcm_s16le",
                        "pcm_s24le",
                        "pcm_s32le",
                        "pcm_f32le",
                        "pcm_f64le",
                        "mp3",
                        "mp2",
                        "mp1",
                    ],
                    "the sample encoding, as ffmpeg names it",
                ),
            ),
            (
                "bits_per_sample",
                schema::nullable(schema::count("bits per sample (WAV only)")),
            ),
            ("sample_rate", schema::count("frames per second")),
            ("channels", schema::count("channels")),
            ("frames", schema::count("sample frames")),
            ("duration_s", seconds("duration")),
            (
                "bitrate_kbps",
                json!({ "type": "number", "minimum": 0, "description": "average bitrate" }),
            ),
            ("truncated", schema::boolean("the file ends inside its data")),
            ("loudness", schema::nullable(loudness)),
            ("mpeg", schema::nullable(mpeg)),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: AudioParams = decode_params(&params)?;
        if !(-120.0..=0.0).contains(&p.silence_threshold_db) {
            return Err(ExecError::InvalidParams(
                "silence_threshold_db must be between -120 and 0".into(),
            ));
        }
        if !(10..=3_600_000).contains(&p.min_silence_ms) {
            return Err(ExecError::InvalidParams(
                "min_silence_ms must be 10-3600000".into(),
            ));
        }
        let bytes = base64::decode(&p.audio_base64)
            .map_err(|e| ExecError::InvalidParams(format!("audio_base64: {e}")))?;
        if bytes.len() > MAX_AUDIO_BYTES {
            return Err(ExecError::InvalidParams(format!(
                "audio_base64: {} bytes, above the limit of {MAX_AUDIO_BYTES}",
                bytes.len()
            )));
        }
        ctx.progress(0.1, "reading audio");
        let settings = SilenceSettings {
            threshold_db: p.silence_threshold_db,
            min_ms: p.min_silence_ms,
        };
        let a = run_blocking(&ctx, "audio analysis", move |cancel| {
            if !bytes.starts_with(b"RIFF") && looks_like_mp3(&bytes) {
                return parse_mp3(&bytes)
                    .map(|m| from_mp3(&m))
                    .map_err(|e| ExecError::InvalidParams(format!("audio_base64: {e}")));
            }
            let wav = parse_wav(&bytes)?;
            analyze(&wav, settings, cancel)
        })
        .await?;
        ctx.progress(1.0, "analysed");
        serde_json::to_value(a).map_err(|e| ExecError::Fatal(e.to_string()))
    }
}

/// How samples are stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SampleFormat {
    /// PCM integers: unsigned at 8 bits, signed little-endian above.
    Int,
    /// IEEE float, little-endian.
    Float,
}

/// A parsed WAV file: its format and a view of its sample data.
#[derive(Debug)]
pub struct Wav<'a> {
    /// Integer or float samples.
    pub sample_format: SampleFormat,
    /// Bits per sample (8, 16, 24, 32; 32 or 64 for float).
    pub bits: u16,
    /// Interleaved channels.
    pub channels: u16,
    /// Frames per second.
    pub sample_rate: u32,
    /// Whole frames of sample data.
    pub data: &'a [u8],
    /// The data chunk claimed more than the file holds.
    pub truncated: bool,
}

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Parses a RIFF/WAVE file, refusing anything it cannot read with a message saying why.
pub fn parse_wav(bytes: &[u8]) -> Result<Wav<'_>, ExecError> {
    let bad = |m: String| ExecError::InvalidParams(format!("audio_base64: {m}"));
    if bytes.len() < 12 || &bytes[8..12] != b"WAVE" {
        return Err(bad(
            "not a WAV or MP3 file (no RIFF/WAVE header, no MPEG audio frames)".into(),
        ));
    }
    match &bytes[0..4] {
        b"RIFF" => {}
        b"RIFX" | b"RF64" | b"BW64" => {
            return Err(bad(format!(
                "{} WAV files are not supported (little-endian RIFF only)",
                String::from_utf8_lossy(&bytes[0..4])
            )));
        }
        _ => {
            return Err(bad(
                "not a WAV or MP3 file (no RIFF/WAVE header, no MPEG audio frames)".into(),
            ));
        }
    }
    let mut fmt: Option<&[u8]> = None;
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            fmt = Some(
                bytes
                    .get(body..body + size)
                    .ok_or_else(|| bad("the fmt chunk is cut short".into()))?,
            );
        } else if id == b"data" {
            let fmt = fmt.ok_or_else(|| bad("the data chunk comes before any fmt chunk".into()))?;
            let (sample_format, bits, channels, sample_rate) = parse_fmt(fmt).map_err(bad)?;
            let available = bytes.len() - body;
            let truncated = size > available;
            let frame = usize::from(channels) * usize::from(bits / 8);
            let len = size.min(available) / frame * frame;
            return Ok(Wav {
                sample_format,
                bits,
                channels,
                sample_rate,
                data: &bytes[body..body + len],
                truncated,
            });
        }
        // Chunks are padded to an even length.
        pos = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(bad(if fmt.is_none() {
        "no fmt chunk".into()
    } else {
        "no data chunk".into()
    }))
}

/// Reads a fmt chunk: (sample format, bits, channels, sample rate).
fn parse_fmt(f: &[u8]) -> Result<(SampleFormat, u16, u16, u32), String> {
    if f.len() < 16 {
        return Err(format!(
            "the fmt chunk is {} bytes, expected at least 16",
            f.len()
        ));
    }
    let mut tag = u16_at(f, 0);
    let channels = u16_at(f, 2);
    let sample_rate = u32_at(f, 4);
    let block_align = u16_at(f, 12);
    let bits = u16_at(f, 14);
    if tag == FORMAT_EXTENSIBLE {
        // cbSize, valid bits, channel mask, then the sub-format GUID whose first two bytes are
        // the real format tag.
        if f.len() < 40 {
            return Err("the extensible fmt chunk is cut short".into());
        }
        tag = u16_at(f, 24);
    }
    let sample_format = match tag {
        FORMAT_PCM => SampleFormat::Int,
        FORMAT_FLOAT => SampleFormat::Float,
        other => {
            return Err(format!(
                "format tag {other:#06x} is not supported (PCM or IEEE float only)"
            ));
        }
    };
    let bits_ok = match sample_format {
        SampleFormat::Int => matches!(bits, 8 | 16 | 24 | 32),
        SampleFormat::Float => matches!(bits, 32 | 64),
    };
    if !bits_ok {
        return Err(format!(
            "{bits}-bit {} samples are not supported",
            if sample_format == SampleFormat::Int {
                "PCM"
            } else {
                "float"
            }
        ));
    }
    if channels == 0 {
        return Err("the fmt chunk says 0 channels".into());
    }
    if !(1..=1_000_000).contains(&sample_rate) {
        return Err(format!("sample rate {sample_rate} Hz is out of range"));
    }
    if u32::from(block_align) != u32::from(channels) * u32::from(bits / 8) {
        return Err(format!(
            "block align {block_align} does not match {channels} channels of {bits} bits"
        ));
    }
    Ok((sample_format, bits, channels, sample_rate))
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

impl Wav<'_> {
    /// Samples as floats, full scale = 1.0, interleaved.
    pub fn samples(&self) -> impl Iterator<Item = f64> + '_ {
        let width = usize::from(self.bits / 8);
        let (format, bits) = (self.sample_format, self.bits);
        self.data.chunks_exact(width).map(move |s| match (format, bits) {
            (SampleFormat::Int, 8) => (f64::from(s[0]) - 128.0) / 128.0,
            (SampleFormat::Int, 16) => f64::from(i16::from_le_bytes([s[0], s[1]])) / 32_768.0,
            // Put the 3 bytes in the top of an i32 so the shift back sign-extends.
            (SampleFormat::Int, 24) => {
                f64::from(i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) / 8_388_608.0
            }
            (SampleFormat::Int, _) => {
                f64::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]])) / 2_147_483_648.0
            }
            (SampleFormat::Float, 32) => f64::from(f32::from_le_bytes([s[0], s[1], s[2], s[3]])),
            (SampleFormat::Float, _) => f64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        })
    }

    /// Whole frames of data.
    pub fn frames(&self) -> u64 {
        (self.data.len() / (usize::from(self.channels) * usize::from(self.bits / 8))) as u64
    }
}

/// What counts as silence.
#[derive(Clone, Copy, Debug)]
pub struct SilenceSettings {
    /// Windows with an RMS below this (dBFS, digital silence = -120) are silent.
    pub threshold_db: f64,
    /// Shorter silent stretches are not reported.
    pub min_ms: u64,
}

/// Measures a parsed WAV, checking `cancel` as it goes.
pub fn analyze(
    wav: &Wav<'_>,
    silence: SilenceSettings,
    cancel: &CancellationToken,
) -> Result<AudioAnalysis, ExecError> {
    let rate = f64::from(wav.sample_rate);
    let channels = usize::from(wav.channels);
    let window_frames = ((rate * WINDOW_MS / 1000.0).round() as usize).max(1);
    let window_samples = window_frames * channels;
    let (mut sum_sq, mut peak, mut count) = (0.0f64, 0.0f64, 0u64);
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut open: Option<u64> = None;
    let (mut win_sq, mut win_n, mut frame) = (0.0f64, 0usize, 0u64);
    for (i, x) in wav.samples().enumerate() {
        if i % (1 << 20) == 0 {
            checkpoint(cancel)?;
        }
        sum_sq += x * x;
        peak = peak.max(x.abs());
        count += 1;
        win_sq += x * x;
        win_n += 1;
        if win_n == window_samples {
            let silent = dbfs((win_sq / win_n as f64).sqrt()) < silence.threshold_db;
            track_silence(silent, frame, &mut open, &mut spans);
            frame += window_frames as u64;
            (win_sq, win_n) = (0.0, 0);
        }
    }
    if win_n > 0 {
        let silent = dbfs((win_sq / win_n as f64).sqrt()) < silence.threshold_db;
        track_silence(silent, frame, &mut open, &mut spans);
        frame += (win_n / channels) as u64;
    }
    if let Some(start) = open {
        spans.push((start, frame));
    }
    let min_frames = (silence.min_ms as f64 / 1000.0 * rate).ceil() as u64;
    let silences: Vec<Silence> = spans
        .into_iter()
        .filter(|(s, e)| e - s >= min_frames)
        .map(|(s, e)| Silence {
            start_s: round3(s as f64 / rate),
            end_s: round3(e as f64 / rate),
            duration_s: round3((e - s) as f64 / rate),
        })
        .collect();
    let frames = wav.frames();
    let bits = u32::from(wav.bits);
    Ok(AudioAnalysis {
        format: "wav".into(),
        encoding: match (wav.sample_format, bits) {
            (SampleFormat::Int, 8) => "pcm_u8".into(),
            (SampleFormat::Int, b) => format!("pcm_s{b}le"),
            (SampleFormat::Float, b) => format!("pcm_f{b}le"),
        },
        bits_per_sample: Some(wav.bits),
        sample_rate: wav.sample_rate,
        channels: wav.channels,
        frames,
        duration_s: round3(frames as f64 / rate),
        bitrate_kbps: round3(rate * f64::from(wav.channels) * f64::from(bits) / 1000.0),
        truncated: wav.truncated,
        loudness: Some(Loudness {
            rms_dbfs: round3(dbfs((sum_sq / count.max(1) as f64).sqrt())),
            peak: round3(peak),
            peak_dbfs: round3(dbfs(peak)),
            silence_total_s: round3(silences.iter().map(|s| s.duration_s).sum()),
            silences,
        }),
        mpeg: None,
    })
}

/// The analysis of an MPEG stream: everything but loudness.
fn from_mp3(m: &Mp3Info) -> AudioAnalysis {
    let duration = m.samples as f64 / f64::from(m.sample_rate);
    AudioAnalysis {
        format: "mp3".into(),
        encoding: format!("mp{}", m.layer),
        bits_per_sample: None,
        sample_rate: m.sample_rate,
        channels: m.channels,
        frames: m.samples,
        duration_s: round3(duration),
        bitrate_kbps: round3(m.audio_bytes as f64 * 8.0 / duration / 1000.0),
        truncated: m.truncated,
        loudness: None,
        mpeg: Some(MpegDetails {
            version: m.version.into(),
            layer: m.layer,
            mpeg_frames: m.frames,
            vbr: m.vbr,
            skipped_bytes: m.skipped_bytes,
        }),
    }
}

/// Opens or closes a silent span as windows go from loud to silent and back.
fn track_silence(silent: bool, start: u64, open: &mut Option<u64>, spans: &mut Vec<(u64, u64)>) {
    match (silent, *open) {
        (true, None) => *open = Some(start),
        (false, Some(s)) => {
            spans.push((s, start));
            *open = None;
        }
        _ => {}
    }
}

/// Linear amplitude to dB full scale, floored at [`FLOOR_DBFS`].
fn dbfs(x: f64) -> f64 {
    if x > 0.0 {
        (20.0 * x.log10()).max(FLOOR_DBFS)
    } else {
        FLOOR_DBFS
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::support::test_support::ctx;

    /// Encodes samples (full scale = 1.0, interleaved) as a WAV file.
    pub(crate) fn wav(format: SampleFormat, bits: u16, channels: u16, rate: u32, samples: &[f64]) -> Vec<u8> {
        let tag = if format == SampleFormat::Int {
            FORMAT_PCM
        } else {
            FORMAT_FLOAT
        };
        let mut fmt = Vec::new();
        fmt.extend(tag.to_le_bytes());
        fmt.extend(channels.to_le_bytes());
        fmt.extend(rate.to_le_bytes());
        fmt.extend((rate * u32::from(channels) * u32::from(bits / 8)).to_le_bytes());
        fmt.extend((channels * (bits / 8)).to_le_bytes());
        fmt.extend(bits.to_le_bytes());
        let mut data = Vec::new();
        for &x in samples {
            match (format, bits) {
                (SampleFormat::Int, 8) => data.push((x * 127.0 + 128.0).round() as u8),
                (SampleFormat::Int, 16) => data.extend(((x * 32_767.0).round() as i16).to_le_bytes()),
                (SampleFormat::Int, 24) => {
                    data.extend(&((x * 8_388_607.0).round() as i32).to_le_bytes()[..3])
                }
                (SampleFormat::Int, _) => data.extend(((x * 2_147_483_647.0).round() as i32).to_le_bytes()),
                (SampleFormat::Float, 32) => data.extend((x as f32).to_le_bytes()),
                (SampleFormat::Float, _) => data.extend(x.to_le_bytes()),
            }
        }
        riff(&[(b"fmt ", fmt), (b"data", data)])
    }

    /// A RIFF/WAVE file of the given chunks.
    fn riff(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut body = b"WAVE".to_vec();
        for (id, data) in chunks {
            body.extend(*id);
            body.extend((data.len() as u32).to_le_bytes());
            body.extend(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut out = b"RIFF".to_vec();
        out.extend((body.len() as u32).to_le_bytes());
        out.extend(body);
        out
    }

    /// `seconds` of a 440 Hz sine at `amplitude`, on every channel.
    pub(crate) fn tone(rate: u32, channels: u16, seconds: f64, amplitude: f64) -> Vec<f64> {
        let frames = (f64::from(rate) * seconds) as usize;
        (0..frames)
            .flat_map(|i| {
                let x = amplitude * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin();
                std::iter::repeat_n(x, usize::from(channels))
            })
            .collect()
    }

    async fn run(params: Value) -> Result<AudioAnalysis, ExecError> {
        let v = AudioAnalyze.execute(ctx(), params).await?;
        Ok(serde_json::from_value(v).unwrap())
    }

    async fn analyse(bytes: &[u8]) -> AudioAnalysis {
        run(json!({ "audio_base64": base64::encode(bytes) }))
            .await
            .unwrap()
    }

    fn invalid(res: Result<AudioAnalysis, ExecError>) -> String {
        match res {
            Err(ExecError::InvalidParams(m)) => m,
            other => panic!("expected InvalidParams, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_sample_format_measures_the_same() {
        let samples = tone(8000, 1, 0.5, 0.5);
        for (format, bits) in [
            (SampleFormat::Int, 8),
            (SampleFormat::Int, 16),
            (SampleFormat::Int, 24),
            (SampleFormat::Int, 32),
            (SampleFormat::Float, 32),
            (SampleFormat::Float, 64),
        ] {
            let a = analyse(&wav(format, bits, 1, 8000, &samples)).await;
            assert_eq!(
                (a.sample_rate, a.channels, a.frames, a.bits_per_sample),
                (8000, 1, 4000, Some(bits))
            );
            assert_eq!(a.bitrate_kbps, 8.0 * f64::from(bits));
            assert_eq!(a.duration_s, 0.5);
            assert!(!a.truncated);
            let a = a.loudness.unwrap();
            // A sine's RMS is its amplitude / sqrt(2): -9.03 dBFS at 0.5; its peak -6.02 dBFS.
            assert!((a.rms_dbfs + 9.03).abs() < 0.1, "{bits}-bit: {}", a.rms_dbfs);
            assert!((a.peak_dbfs + 6.02).abs() < 0.1, "{bits}-bit: {}", a.peak_dbfs);
            assert!(a.silences.is_empty());
        }
    }

    #[tokio::test]
    async fn finds_silences_longer_than_the_minimum() {
        let rate = 8000;
        let mut s = tone(rate, 2, 0.5, 0.8);
        s.extend(vec![0.0; 8000 * 2]); // 1 s of silence
        s.extend(tone(rate, 2, 0.5, 0.8));
        s.extend(vec![0.0; 800 * 2]); // 0.1 s: too short
        s.extend(tone(rate, 2, 0.25, 0.8));
        let a = analyse(&wav(SampleFormat::Int, 16, 2, rate, &s)).await;
        assert_eq!(
            (a.channels, a.duration_s, a.encoding.as_str()),
            (2, 2.35, "pcm_s16le")
        );
        let a = a.loudness.unwrap();
        assert_eq!(
            a.silences,
            vec![Silence {
                start_s: 0.5,
                end_s: 1.5,
                duration_s: 1.0
            }]
        );
        assert_eq!(a.silence_total_s, 1.0);
        // A shorter minimum finds the short gap too; a very low threshold finds nothing.
        let b64 = base64::encode(&wav(SampleFormat::Int, 16, 2, rate, &s));
        let a = run(json!({ "audio_base64": b64, "min_silence_ms": 50 }))
            .await
            .unwrap()
            .loudness
            .unwrap();
        assert_eq!(a.silences.len(), 2);
        assert_eq!((a.silences[1].start_s, a.silences[1].end_s), (2.0, 2.1));
        let a = run(json!({ "audio_base64": b64, "silence_threshold_db": -120 }))
            .await
            .unwrap()
            .loudness
            .unwrap();
        assert!(a.silences.is_empty());
        // Digital silence throughout: one span, floored loudness.
        let a = analyse(&wav(SampleFormat::Int, 16, 1, rate, &[0.0; 8000]))
            .await
            .loudness
            .unwrap();
        assert_eq!(
            (a.rms_dbfs, a.peak_dbfs, a.silence_total_s),
            (FLOOR_DBFS, FLOOR_DBFS, 1.0)
        );
    }

    #[tokio::test]
    async fn reads_extensible_and_odd_chunks_and_truncation() {
        // WAVE_FORMAT_EXTENSIBLE with a PCM sub-format, after an odd-sized LIST chunk.
        let mut fmt = Vec::new();
        fmt.extend(FORMAT_EXTENSIBLE.to_le_bytes());
        fmt.extend(1u16.to_le_bytes());
        fmt.extend(16_000u32.to_le_bytes());
        fmt.extend(32_000u32.to_le_bytes());
        fmt.extend(2u16.to_le_bytes());
        fmt.extend(16u16.to_le_bytes());
        fmt.extend(22u16.to_le_bytes());
        fmt.extend(16u16.to_le_bytes());
        fmt.extend(4u32.to_le_bytes());
        fmt.extend([1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71]);
        let data: Vec<u8> = (0..16_000).flat_map(|_| 16_384i16.to_le_bytes()).collect();
        let file = riff(&[(b"LIST", vec![1, 2, 3]), (b"fmt ", fmt), (b"data", data)]);
        let a = analyse(&file).await;
        assert_eq!((a.sample_rate, a.frames, a.duration_s), (16_000, 16_000, 1.0));
        let rms = a.loudness.as_ref().unwrap().rms_dbfs;
        assert!((rms + 6.02).abs() < 0.01, "{rms}");
        // Cut the file: the frames present are analysed and the cut is reported.
        let a = analyse(&file[..file.len() - 8_001]).await;
        assert!(a.truncated);
        assert_eq!(a.frames, 11_999);
    }

    #[tokio::test]
    async fn mp3_duration_without_loudness() {
        use crate::codecs::mp3::tests::{frames, header};
        // 100 frames of MPEG-1 layer III, 128 kbit/s, 44.1 kHz: 100 x 1152 samples.
        let a = analyse(&frames(header(1, 3, 9, 0, false), 100)).await;
        assert_eq!((a.format.as_str(), a.encoding.as_str()), ("mp3", "mp3"));
        assert_eq!((a.sample_rate, a.channels, a.frames), (44_100, 2, 115_200));
        assert_eq!(a.duration_s, 2.612);
        assert!((a.bitrate_kbps - 127.7).abs() < 0.1, "{}", a.bitrate_kbps);
        assert_eq!((a.bits_per_sample, a.loudness), (None, None));
        let mpeg = a.mpeg.unwrap();
        assert_eq!(
            (mpeg.version.as_str(), mpeg.layer, mpeg.mpeg_frames, mpeg.vbr),
            ("1", 3, 100, false)
        );
        // A stream that starts like MP3 but holds no frames is refused.
        let m =
            invalid(run(json!({ "audio_base64": base64::encode(b"ID3\x04\x00\x00\x00\x00\x00\x00") })).await);
        assert!(m.contains("not a WAV or MP3 file"), "{m}");
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_read() {
        let good = wav(SampleFormat::Int, 16, 1, 8000, &[0.1; 10]);
        let with_fmt = |patch: &dyn Fn(&mut Vec<u8>)| {
            let mut f = good.clone();
            patch(&mut f);
            json!({ "audio_base64": base64::encode(&f) })
        };
        for (params, want) in [
            (
                json!({ "audio_base64": base64::encode(b"hello world, this is text") }),
                "not a WAV or MP3 file",
            ),
            (json!({ "audio_base64": "@@" }), "invalid base64 character '@'"),
            (
                with_fmt(&|f| f[0..4].copy_from_slice(b"RIFX")),
                "RIFX WAV files are not supported",
            ),
            (
                with_fmt(&|f| f[20..22].copy_from_slice(&2u16.to_le_bytes())),
                "format tag 0x0002 is not supported",
            ),
            (
                with_fmt(&|f| f[34..36].copy_from_slice(&12u16.to_le_bytes())),
                "12-bit PCM samples are not supported",
            ),
            (
                with_fmt(&|f| f[22..24].copy_from_slice(&0u16.to_le_bytes())),
                "0 channels",
            ),
            (
                with_fmt(&|f| f[32..34].copy_from_slice(&3u16.to_le_bytes())),
                "block align 3 does not match",
            ),
            (with_fmt(&|f| f[36..40].copy_from_slice(b"junk")), "no data chunk"),
            (
                with_fmt(&|f| f[12..16].copy_from_slice(b"junk")),
                "the data chunk comes before any fmt chunk",
            ),
            (
                json!({ "audio_base64": "", "silence_threshold_db": 3 }),
                "between -120 and 0",
            ),
            (
                json!({ "audio_base64": "", "min_silence_ms": 1 }),
                "min_silence_ms must be",
            ),
            (json!({ "audio_base64": "", "gain": 1 }), "unknown field `gain`"),
        ] {
            let m = invalid(run(params).await);
            assert!(m.contains(want), "{m} (wanted {want})");
        }
    }

    #[test]
    fn damaged_files_are_refused_or_read_never_panic() {
        let good = wav(SampleFormat::Int, 24, 2, 8000, &tone(8000, 2, 0.05, 0.5));
        let mut rng = crate::support::test_support::Rng::new(11);
        let settings = SilenceSettings {
            threshold_db: -50.0,
            min_ms: 10,
        };
        let cancel = CancellationToken::new();
        for _ in 0..3000 {
            let bad = rng.mutate(&good);
            if let Ok(w) = parse_wav(&bad) {
                let a = analyze(&w, settings, &cancel).unwrap();
                assert!(a.duration_s >= 0.0 && a.loudness.unwrap().rms_dbfs >= FLOOR_DBFS);
            }
        }
    }

    #[tokio::test]
    async fn honours_cancel() {
        let c = ctx();
        c.cancel.cancel();
        let b64 = base64::encode(&wav(SampleFormat::Int, 16, 1, 8000, &[0.0; 100]));
        let res = AudioAnalyze.execute(c, json!({ "audio_base64": b64 })).await;
        assert_eq!(res, Err(ExecError::Cancelled));
        let cancel = CancellationToken::new();
        cancel.cancel();
        let bytes = wav(SampleFormat::Int, 16, 1, 8000, &[0.0; 100]);
        let settings = SilenceSettings {
            threshold_db: -50.0,
            min_ms: 300,
        };
        let res = analyze(&parse_wav(&bytes).unwrap(), settings, &cancel);
        assert_eq!(res, Err(ExecError::Cancelled));
    }
}
