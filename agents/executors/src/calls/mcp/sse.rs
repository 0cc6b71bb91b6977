//! A bounded decoder for `text/event-stream` bodies (the Server-Sent Events format), fed
//! chunk by chunk as they arrive. Only what MCP needs: `data:` lines joined into an event's
//! data, `event:` to skip events that are not `message`; `id:`, `retry:` and comments are
//! ignored. Lines end with `\n` (a `\r` before it is dropped); a bare `\r` line ending is not
//! recognised.

/// Why a stream was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooLarge;

/// Decoder state between chunks.
pub(super) struct SseDecoder {
    /// Bytes of the line not finished yet.
    line: Vec<u8>,
    /// The data of the event being read.
    data: Vec<u8>,
    /// Whether the event being read has a `data:` field.
    has_data: bool,
    /// Whether the event being read named a type other than `message`.
    other_type: bool,
    /// Largest line and largest event data accepted.
    max: usize,
}

impl SseDecoder {
    /// A decoder refusing lines or events of more than `max` bytes.
    pub(super) fn new(max: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            other_type: false,
            max,
        }
    }

    /// Feeds a chunk; returns the data of every `message` event it completed.
    pub(super) fn feed(&mut self, mut chunk: &[u8]) -> Result<Vec<Vec<u8>>, TooLarge> {
        let mut events = Vec::new();
        while !chunk.is_empty() {
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if self.line.len() + take > self.max {
                return Err(TooLarge);
            }
            self.line.extend_from_slice(&chunk[..take]);
            chunk = &chunk[if done { take + 1 } else { take }..];
            if done {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(data) = self.field(&line)? {
                    events.push(data);
                }
                line.clear();
                self.line = line;
            }
        }
        Ok(events)
    }

    /// Takes in one complete line; the event's data when the line ends an event.
    fn field(&mut self, line: &[u8]) -> Result<Option<Vec<u8>>, TooLarge> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.data);
            let wanted = self.has_data && !self.other_type;
            self.has_data = false;
            self.other_type = false;
            return Ok(wanted.then_some(event));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                let extra = usize::from(self.has_data);
                if self.data.len() + extra + value.len() > self.max {
                    return Err(TooLarge);
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.other_type = value != b"message",
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(decoder: &mut SseDecoder, chunks: &[&[u8]]) -> Vec<String> {
        chunks
            .iter()
            .flat_map(|c| decoder.feed(c).unwrap())
            .map(|d| String::from_utf8(d).unwrap())
            .collect()
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = b"event: message\r\nid: 1\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: comment\n\ndata:{\"b\":2}\n\nevent: other\ndata: x\n\n";
        let whole = all(&mut SseDecoder::new(1024), &[stream]);
        assert_eq!(whole, vec!["{\"a\":\n1}", "{\"b\":2}"]);
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(all(&mut SseDecoder::new(1024), &[a, b]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(all(&mut SseDecoder::new(1024), &bytes), whole);
    }

    #[test]
    fn an_endless_line_or_event_is_refused() {
        let mut d = SseDecoder::new(16);
        assert_eq!(d.feed(b"data: 0123456789"), Ok(vec![]));
        assert_eq!(d.feed(b"0123456789"), Err(TooLarge));
        let mut d = SseDecoder::new(16);
        assert_eq!(d.feed(b"data: 0123456\ndata: 0123456\n"), Ok(vec![]));
        assert_eq!(d.feed(b"data: 0123456\n"), Err(TooLarge));
    }
}
