//! A file written on a blocking thread of its own, fed with buffers over a channel.
//!
//! Hashing and sealing the next bytes overlap with writing the previous ones, and each
//! byte is copied once on its way to the file.

use std::fs::File;
use std::io::Write;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Size of the buffers handed to the writing thread.
const BUFFER_SIZE: usize = 256 * 1024;

/// Buffers in flight between the async side and the writing thread.
const BUFFERS_IN_FLIGHT: usize = 4;

/// The async side of a file being written.
pub(super) struct FileSink {
    buffer: BytesMut,
    sender: Option<mpsc::Sender<Bytes>>,
    writer: JoinHandle<std::io::Result<()>>,
}

impl FileSink {
    /// Starts the writing thread for `file`.
    pub(super) fn new(file: File) -> Self {
        let (sender, mut receiver) = mpsc::channel::<Bytes>(BUFFERS_IN_FLIGHT);
        let writer = tokio::task::spawn_blocking(move || {
            let mut file = file;
            while let Some(bytes) = receiver.blocking_recv() {
                file.write_all(&bytes)?;
            }
            file.sync_all()
        });
        Self {
            buffer: BytesMut::with_capacity(BUFFER_SIZE),
            sender: Some(sender),
            writer,
        }
    }

    /// Appends `data`, handing full buffers to the writing thread.
    pub(super) async fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let take = (BUFFER_SIZE - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == BUFFER_SIZE {
                self.send_buffer().await?;
            }
        }
        Ok(())
    }

    async fn send_buffer(&mut self) -> std::io::Result<()> {
        let full = std::mem::replace(&mut self.buffer, BytesMut::with_capacity(BUFFER_SIZE));
        let sender = self.sender.as_ref().expect("the sender lives until finish");
        if sender.send(full.freeze()).await.is_err() {
            // The writing thread stopped early, which only a write error causes.
            return Err(self.stop().await.err().unwrap_or_else(|| {
                std::io::Error::other("the file writer stopped before the end")
            }));
        }
        Ok(())
    }

    /// Writes what is buffered, fsyncs the file and waits for the writing thread.
    pub(super) async fn finish(mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.send_buffer().await?;
        }
        self.stop().await
    }

    async fn stop(&mut self) -> std::io::Result<()> {
        self.sender = None;
        (&mut self.writer)
            .await
            .map_err(|error| std::io::Error::other(format!("the file writer failed: {error}")))?
    }
}
