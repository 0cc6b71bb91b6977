//! Reading MPEG audio (MP3, and MP2/MP1) streams without decoding them: an ID3v2 tag is
//! skipped, then frame headers are walked to count frames and samples, which gives the exact
//! duration of CBR and VBR files alike. A Xing/Info or VBRI header frame carries no audio and
//! is not counted; bytes between frames that are not a frame (junk, a trailing ID3v1 or APE
//! tag) are skipped.

/// What the frame walk found.
#[derive(Clone, Debug, PartialEq)]
pub struct Mp3Info {
    /// `1`, `2` or `2.5`.
    pub version: &'static str,
    /// 1, 2 or 3.
    pub layer: u8,
    /// Frames per second.
    pub sample_rate: u32,
    /// 1 (mono) or 2.
    pub channels: u16,
    /// Audio frames counted (the Xing/Info/VBRI frame excluded).
    pub frames: u64,
    /// Samples per channel in those frames.
    pub samples: u64,
    /// Bytes in those frames.
    pub audio_bytes: u64,
    /// Frames do not all have the same bitrate.
    pub vbr: bool,
    /// Bytes skipped between frames (tags excluded).
    pub skipped_bytes: u64,
    /// The last frame is cut short.
    pub truncated: bool,
}

/// One MPEG audio frame header.
#[derive(Clone, Copy, Debug, PartialEq)]
struct FrameHeader {
    /// 1, 2 or 25 (for 2.5).
    version: u8,
    layer: u8,
    bitrate_kbps: u32,
    sample_rate: u32,
    padding: bool,
    mono: bool,
}

#[rustfmt::skip]
const BITRATES: [[u32; 14]; 5] = [
    [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448], // V1 L1
    [32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],    // V1 L2
    [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],     // V1 L3
    [32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],    // V2/2.5 L1
    [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],         // V2/2.5 L2, L3
];

impl FrameHeader {
    /// Parses the 4 header bytes at the start of `b`; `None` if they are not a usable header
    /// (no sync, reserved values, free-format bitrate).
    fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < 4 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 || b[3] & 3 == 2 {
            return None;
        }
        let version = match (b[1] >> 3) & 3 {
            0 => 25,
            2 => 2,
            3 => 1,
            _ => return None,
        };
        let layer = match (b[1] >> 1) & 3 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => return None,
        };
        let index = usize::from(b[2] >> 4);
        if index == 0 || index == 15 {
            return None;
        }
        let table = match (version, layer) {
            (1, l) => usize::from(l - 1),
            (_, 1) => 3,
            _ => 4,
        };
        let base_rate = match (b[2] >> 2) & 3 {
            0 => 44_100,
            1 => 48_000,
            2 => 32_000,
            _ => return None,
        };
        Some(FrameHeader {
            version,
            layer,
            bitrate_kbps: BITRATES[table][index - 1],
            sample_rate: match version {
                1 => base_rate,
                2 => base_rate / 2,
                _ => base_rate / 4,
            },
            padding: b[2] & 2 != 0,
            mono: b[3] >> 6 == 3,
        })
    }

    /// Samples per channel in one frame.
    fn samples(&self) -> u32 {
        match (self.layer, self.version) {
            (1, _) => 384,
            (3, 2 | 25) => 576,
            _ => 1152,
        }
    }

    /// Frame length in bytes, header included.
    fn len(&self) -> usize {
        let bits_per_second = self.bitrate_kbps as usize * 1000;
        let rate = self.sample_rate as usize;
        if self.layer == 1 {
            (12 * bits_per_second / rate + usize::from(self.padding)) * 4
        } else {
            self.samples() as usize / 8 * bits_per_second / rate + usize::from(self.padding)
        }
    }

    /// Whether `other` belongs to the same stream (a false sync usually differs here).
    fn same_stream(&self, other: &FrameHeader) -> bool {
        (self.version, self.layer, self.sample_rate) == (other.version, other.layer, other.sample_rate)
    }

    /// Whether this (first) frame is a Xing/Info or VBRI header rather than audio.
    fn is_info_frame(&self, frame: &[u8]) -> bool {
        if self.layer != 3 {
            return false;
        }
        let side_info = match (self.version, self.mono) {
            (1, true) => 17,
            (1, false) => 32,
            (_, true) => 9,
            (_, false) => 17,
        };
        let tag_at = |i: usize, tag: &[u8]| frame.get(i..i + tag.len()) == Some(tag);
        tag_at(4 + side_info, b"Xing") || tag_at(4 + side_info, b"Info") || tag_at(36, b"VBRI")
    }
}

/// Whether `bytes` look like MPEG audio: an ID3v2 tag or a frame header at the start.
pub fn looks_like_mp3(bytes: &[u8]) -> bool {
    bytes.starts_with(b"ID3") || FrameHeader::parse(bytes).is_some()
}

/// Length of an ID3v2 tag at the start of `bytes` (0 if there is none).
fn id3v2_len(bytes: &[u8]) -> usize {
    if bytes.len() < 10 || !bytes.starts_with(b"ID3") {
        return 0;
    }
    // The size is "syncsafe": 7 bits per byte; a footer (flag 0x10) adds 10 bytes.
    let size = bytes[6..10]
        .iter()
        .fold(0usize, |acc, b| acc << 7 | usize::from(b & 0x7F));
    10 + size + if bytes[5] & 0x10 != 0 { 10 } else { 0 }
}

/// Walks the frames of an MPEG audio stream. The error says why nothing could be read.
pub fn parse_mp3(bytes: &[u8]) -> Result<Mp3Info, String> {
    let mut pos = id3v2_len(bytes);
    let mut first: Option<FrameHeader> = None;
    let mut info = Mp3Info {
        version: "1",
        layer: 3,
        sample_rate: 0,
        channels: 0,
        frames: 0,
        samples: 0,
        audio_bytes: 0,
        vbr: false,
        skipped_bytes: 0,
        truncated: false,
    };
    while pos + 4 <= bytes.len() {
        let rest = &bytes[pos..];
        if rest.starts_with(b"TAG") && rest.len() == 128 || rest.starts_with(b"APETAGEX") {
            break;
        }
        let header = FrameHeader::parse(rest).filter(|h| first.is_none_or(|f| f.same_stream(h)));
        let Some(h) = header else {
            pos += 1;
            info.skipped_bytes += 1;
            continue;
        };
        let len = h.len();
        if len > rest.len() {
            // A frame cut short at the end: count what is certain, say it is cut.
            if first.is_some() {
                info.truncated = true;
                break;
            }
            pos += 1;
            info.skipped_bytes += 1;
            continue;
        }
        // A sync pattern inside junk is believed only if the next frame (or the end) follows.
        let next = &rest[len..];
        let confirmed = next.len() < 4
            || next.starts_with(b"TAG")
            || next.starts_with(b"APETAGEX")
            || FrameHeader::parse(next).is_some_and(|n| n.same_stream(&h));
        if !confirmed && first.is_none() {
            pos += 1;
            info.skipped_bytes += 1;
            continue;
        }
        match first {
            None => {
                first = Some(h);
                info.version = match h.version {
                    1 => "1",
                    2 => "2",
                    _ => "2.5",
                };
                info.layer = h.layer;
                info.sample_rate = h.sample_rate;
                info.channels = if h.mono { 1 } else { 2 };
                if !h.is_info_frame(&rest[..len]) {
                    count(&mut info, &h, len, None);
                }
            }
            Some(f) => count(&mut info, &h, len, Some(&f)),
        }
        pos += len;
    }
    if info.frames == 0 {
        return Err(if first.is_some() {
            "the MPEG stream has no audio frames".into()
        } else {
            "not a WAV or MP3 file (no RIFF header, no MPEG audio frames)".into()
        });
    }
    Ok(info)
}

fn count(info: &mut Mp3Info, h: &FrameHeader, len: usize, first_audio: Option<&FrameHeader>) {
    if info.frames > 0 && first_audio.is_some_and(|f| f.bitrate_kbps != h.bitrate_kbps) {
        info.vbr = true;
    }
    info.frames += 1;
    info.samples += u64::from(h.samples());
    info.audio_bytes += len as u64;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::support::test_support::Rng;

    /// A frame header: MPEG version (1, 2, 25), layer, bitrate and sample rate indexes.
    pub(crate) fn header(version: u8, layer: u8, bitrate_index: u8, rate_index: u8, mono: bool) -> [u8; 4] {
        let v = match version {
            1 => 3,
            2 => 2,
            _ => 0,
        };
        let l = 4 - layer;
        [
            0xFF,
            0xE0 | v << 3 | l << 1 | 1,
            bitrate_index << 4 | rate_index << 2,
            if mono { 0xC0 } else { 0 },
        ]
    }

    /// `n` silent frames (zero payload) with this header.
    pub(crate) fn frames(h: [u8; 4], n: usize) -> Vec<u8> {
        let len = FrameHeader::parse(&h).unwrap().len();
        let mut frame = h.to_vec();
        frame.resize(len, 0);
        frame.repeat(n)
    }

    fn id3v2(body_len: usize) -> Vec<u8> {
        let mut t = b"ID3\x04\x00\x00".to_vec();
        t.extend((0..4).rev().map(|i| (body_len >> (7 * i) & 0x7F) as u8));
        t.resize(10 + body_len, 0xFF); // sync-like bytes inside the tag must not count
        t
    }

    #[test]
    fn headers() {
        let h = FrameHeader::parse(&header(1, 3, 9, 0, false)).unwrap();
        assert_eq!(
            (h.bitrate_kbps, h.sample_rate, h.samples(), h.len()),
            (128, 44_100, 1152, 417)
        );
        let h = FrameHeader::parse(&header(2, 3, 8, 0, true)).unwrap();
        assert_eq!(
            (h.bitrate_kbps, h.sample_rate, h.samples(), h.len()),
            (64, 22_050, 576, 208)
        );
        let h = FrameHeader::parse(&header(25, 3, 8, 2, true)).unwrap();
        assert_eq!((h.sample_rate, h.len()), (8_000, 576));
        let h = FrameHeader::parse(&header(1, 2, 10, 1, false)).unwrap();
        assert_eq!((h.bitrate_kbps, h.samples(), h.len()), (192, 1152, 576));
        let h = FrameHeader::parse(&header(1, 1, 4, 1, false)).unwrap();
        assert_eq!((h.bitrate_kbps, h.samples(), h.len()), (128, 384, 128));
        for bad in [
            [0xFF, 0xE0 | 1 << 3 | 1 << 1, 0x90, 0],
            header(1, 3, 0, 0, false),
            header(1, 3, 15, 0, false),
        ] {
            assert!(FrameHeader::parse(&bad).is_none(), "{bad:x?}");
        }
    }

    #[test]
    fn cbr_with_tags_and_info_frame() {
        let h = header(1, 3, 9, 0, false);
        let mut file = id3v2(300);
        let mut info_frame = frames(h, 1);
        info_frame[4 + 32..4 + 36].copy_from_slice(b"Info");
        file.extend(info_frame);
        file.extend(frames(h, 100));
        file.extend(b"TAG");
        file.resize(file.len() + 125, b' ');
        let m = parse_mp3(&file).unwrap();
        assert_eq!(
            (m.version, m.layer, m.sample_rate, m.channels),
            ("1", 3, 44_100, 2)
        );
        assert_eq!((m.frames, m.samples, m.audio_bytes), (100, 115_200, 41_700));
        assert_eq!((m.vbr, m.skipped_bytes, m.truncated), (false, 0, false));
    }

    #[test]
    fn vbr_junk_and_truncation() {
        let mut file = frames(header(2, 3, 8, 0, true), 10);
        file.extend(b"junk!");
        file.extend(frames(header(2, 3, 12, 0, true), 10));
        file.truncate(file.len() - 50);
        let m = parse_mp3(&file).unwrap();
        assert_eq!((m.version, m.sample_rate, m.channels), ("2", 22_050, 1));
        assert_eq!((m.frames, m.samples), (19, 19 * 576));
        assert!(m.vbr && m.truncated);
        assert_eq!(m.skipped_bytes, 5);
    }

    #[test]
    fn refuses_non_audio() {
        assert!(
            parse_mp3(b"plain text, not audio at all")
                .unwrap_err()
                .contains("not a WAV or MP3")
        );
        let mut xing = frames(header(1, 3, 9, 0, true), 1);
        xing[4 + 17..4 + 21].copy_from_slice(b"Xing");
        assert!(parse_mp3(&xing).unwrap_err().contains("no audio frames"));
        assert!(looks_like_mp3(&id3v2(5)) && looks_like_mp3(&header(1, 3, 9, 0, false)));
        assert!(!looks_like_mp3(b"RIFF"));
    }

    #[test]
    fn damaged_streams_never_panic() {
        let mut good = id3v2(20);
        good.extend(frames(header(1, 3, 5, 1, false), 4));
        let mut rng = Rng::new(13);
        for _ in 0..3000 {
            if let Ok(m) = parse_mp3(&rng.mutate(&good)) {
                assert!(m.frames > 0 && m.sample_rate > 0);
            }
        }
    }
}
