//! A partition's queue of fetched records, taken many records per call.
//!
//! The rdkafka crate's `PartitionQueue::poll` hands out one record per call, each as an
//! event of its own: a queue lock, an `Arc` allocation and several clock reads per record
//! (a fifth of the reader threads' time at a million records a second). This queue takes up
//! to [`Polled`]'s capacity of records in one `rd_kafka_consume_batch_queue` call; the
//! records come in the queue's order, fetch errors and partition-EOF events among them in
//! their place, exactly as the one-by-one polls would see them.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Timestamp;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka_sys as rdsys;

use super::consumer::{Context, Tp};
use super::records::{HeaderList, Record};

/// The queue librdkafka fetches one partition's records into, split off the consumer's
/// queue (what `BaseConsumer::split_partition_queue` does).
pub(crate) struct RecordQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// The client the queue belongs to: the queue is destroyed before it.
    _consumer: Arc<BaseConsumer<Context>>,
}

// SAFETY: librdkafka's queues are locked internally; any thread may consume from one or
// destroy it.
unsafe impl Send for RecordQueue {}
unsafe impl Sync for RecordQueue {}

impl RecordQueue {
    /// The queue of `tp`, no longer forwarded to the consumer's queue. `None` for a topic
    /// name with a NUL byte or a partition librdkafka does not know.
    pub fn split(consumer: &Arc<BaseConsumer<Context>>, tp: &Tp) -> Option<Self> {
        let topic = CString::new(tp.0.as_str()).ok()?;
        // SAFETY: the client pointer is valid while `consumer` lives, `topic` is a C string
        // for the call; the queue returned is ours to destroy.
        let queue = NonNull::new(unsafe { rdsys::rd_kafka_queue_get_partition(consumer.client().native_ptr(), topic.as_ptr(), tp.1) })?;
        // SAFETY: `queue` is a valid queue handle; a NULL destination stops the forwarding.
        unsafe { rdsys::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut()) };
        Some(Self { queue, _consumer: Arc::clone(consumer) })
    }

    /// Replaces what `polled` held with up to `max` (at most its capacity) of the queue's
    /// next records and events, waiting up to `timeout` for them: it returns when it has
    /// `max`, or when `timeout` has passed with fewer (perhaps none).
    pub fn poll(&self, timeout: Duration, max: usize, polled: &mut Polled) {
        polled.clear();
        let max = max.clamp(1, polled.messages.capacity());
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the array has room for `max` pointers; librdkafka writes `n <= max` of them,
        // each a message we own until `rd_kafka_message_destroy`.
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(self.queue.as_ptr(), timeout_ms, polled.messages.as_mut_ptr().cast(), max)
        };
        // SAFETY: the first `n` slots were written (a negative `n` is an error: none were).
        unsafe { polled.messages.set_len(usize::try_from(n).unwrap_or(0).min(max)) };
    }
}

impl Drop for RecordQueue {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and the client still lives (`_consumer`).
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}

/// The records and events of one [`RecordQueue::poll`], owned until the next poll or drop.
pub(crate) struct Polled {
    messages: Vec<NonNull<rdsys::rd_kafka_message_t>>,
}

// SAFETY: the messages are owned (not shared with librdkafka's threads) until destroyed.
unsafe impl Send for Polled {}

impl Polled {
    /// Room for `capacity` records per poll.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { messages: Vec::with_capacity(capacity.max(1)) }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// The `i`-th record, or the error or partition-EOF event in its place.
    pub fn get(&self, i: usize) -> Result<RawRecord<'_>, KafkaError> {
        // SAFETY: the message is valid until `clear`, which needs `&mut self`.
        let m = unsafe { self.messages[i].as_ref() };
        match m.err {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(RawRecord(m)),
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => Err(KafkaError::PartitionEOF(m.partition)),
            e => Err(KafkaError::MessageConsumption(e.into())),
        }
    }

    fn clear(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each message is ours, destroyed once.
            unsafe { rdsys::rd_kafka_message_destroy(m.as_ptr()) }
        }
    }
}

impl Drop for Polled {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A record of a [`Polled`].
pub(crate) struct RawRecord<'a>(&'a rdsys::rd_kafka_message_t);

/// The `len` bytes at `ptr`; `None` for a NULL pointer.
fn bytes<'a>(ptr: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY: librdkafka's key and payload pointers point at `len` bytes that live as long as
    // the message (the caller ties `'a` to it).
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

impl Record for RawRecord<'_> {
    fn offset(&self) -> i64 {
        self.0.offset
    }

    fn timestamp(&self) -> Timestamp {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a valid message; librdkafka writes the type.
        let ms = unsafe { rdsys::rd_kafka_message_timestamp(self.0, &mut kind) };
        match kind {
            _ if ms == -1 => Timestamp::NotAvailable,
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => Timestamp::CreateTime(ms),
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => Timestamp::LogAppendTime(ms),
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE => Timestamp::NotAvailable,
        }
    }

    fn key(&self) -> Option<&[u8]> {
        bytes(self.0.key, self.0.key_len)
    }

    fn payload(&self) -> Option<&[u8]> {
        bytes(self.0.payload, self.0.len)
    }

    fn headers(&self) -> HeaderList {
        let mut headers = std::ptr::null_mut();
        // SAFETY: a valid message; librdkafka points `headers` at the message's own list.
        let found = unsafe { rdsys::rd_kafka_message_headers(self.0, &mut headers) };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for idx in 0.. {
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
            // SAFETY: `headers` lives with the message; librdkafka writes the three outputs.
            let err = unsafe { rdsys::rd_kafka_header_get_all(headers, idx, &mut name, &mut value, &mut size) };
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                break;
            }
            // SAFETY: a header name is a NUL-terminated string owned by the list.
            let key = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned();
            out.push((key, bytes(value, size).map(<[u8]>::to_vec)));
        }
        out
    }
}
