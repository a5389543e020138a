// One open connection to the host: NDJSON over a NamedPipeClientStream, one reader thread that
// routes every incoming line to the pending request with the same request_id, and serialized
// writes. When the stream ends or breaks, every pending request fails with
// SdxlHostConnectionException and the connection is dead for good (the client opens a new one
// on its next call).
//
// Thread-safety: all members may be called from any thread. Progress callbacks run on the reader
// thread, in the order the host sent them; completions run asynchronously (never on that thread).

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipes;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace SdxlHost.Client
{
    /// <summary>A request waiting for its response line.</summary>
    internal sealed class PendingRequest
    {
        public PendingRequest(Action<IDictionary<string, object>> onProgress)
        {
            OnProgress = onProgress;
            Completion = new TaskCompletionSource<IDictionary<string, object>>(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        /// <summary>Called on the reader thread for each progress envelope of this request; may be null.</summary>
        public Action<IDictionary<string, object>> OnProgress { get; private set; }

        /// <summary>Completed with the response envelope, or failed/cancelled.</summary>
        public TaskCompletionSource<IDictionary<string, object>> Completion { get; private set; }
    }

    /// <summary>An open NDJSON conversation with the host over one pipe stream.</summary>
    internal sealed class PipeConnection : IDisposable
    {
        private const int kReadBufferBytes = 64 * 1024;
        private const int kKeptLineCapacityBytes = 4 * 1024 * 1024;
        private static readonly UTF8Encoding kUtf8 = new UTF8Encoding(false, true);

        private readonly NamedPipeClientStream stream_;
        private readonly string pipeName_;
        private readonly ConcurrentDictionary<string, PendingRequest> pending_ = new ConcurrentDictionary<string, PendingRequest>();
        private readonly SemaphoreSlim writeLock_ = new SemaphoreSlim(1, 1);
        private readonly object failLock_ = new object();
        private Thread reader_;
        private Exception failure_;

        private PipeConnection(NamedPipeClientStream stream, string pipeName)
        {
            stream_ = stream;
            pipeName_ = pipeName;
        }

        /// <summary>Connects to <paramref name="pipeName"/> on <paramref name="serverName"/> and starts reading.</summary>
        public static async Task<PipeConnection> OpenAsync(string serverName, string pipeName, int timeoutMilliseconds,
                                                           CancellationToken cancellationToken)
        {
            var stream = new NamedPipeClientStream(serverName, pipeName, PipeDirection.InOut, PipeOptions.Asynchronous);
            try
            {
                await stream.ConnectAsync(timeoutMilliseconds, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception error) when (error is IOException || error is TimeoutException || error is UnauthorizedAccessException)
            {
                stream.Dispose();
                throw new SdxlHostConnectionException(
                    "could not connect to sdxl-host on pipe '" + pipeName + "' within " + timeoutMilliseconds +
                    " ms (is `sdxl-host serve` running with this pipe_name?): " + error.Message, error);
            }
            catch
            {
                stream.Dispose();
                throw;
            }
            var connection = new PipeConnection(stream, pipeName);
            connection.StartReader();
            return connection;
        }

        /// <summary>Null while the connection works; the reason once it is dead.</summary>
        public Exception Failure { get { lock (failLock_) return failure_; } }

        /// <summary>True while the connection can carry requests.</summary>
        public bool IsAlive { get { return Failure == null; } }

        /// <summary>Registers <paramref name="requestId"/> before its line is sent; throws if the connection is dead.</summary>
        public PendingRequest Register(string requestId, Action<IDictionary<string, object>> onProgress)
        {
            var request = new PendingRequest(onProgress);
            if (!pending_.TryAdd(requestId, request))
                throw new InvalidOperationException("request id '" + requestId + "' is already in flight on this connection");
            var failure = Failure;
            if (failure != null)
            {
                PendingRequest ignored;
                pending_.TryRemove(requestId, out ignored);
                throw LostException(failure);
            }
            return request;
        }

        /// <summary>Forgets a pending request (its response, if it comes, is dropped); false if it already completed.</summary>
        public bool Forget(string requestId, out PendingRequest request)
        {
            return pending_.TryRemove(requestId, out request);
        }

        /// <summary>Writes one envelope as one line; a write failure kills the connection.</summary>
        public async Task SendAsync(IDictionary<string, object> envelope, CancellationToken cancellationToken)
        {
            byte[] line = kUtf8.GetBytes(WireJson.Serialize(envelope) + "\n");
            await writeLock_.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var failure = Failure;
                if (failure != null) throw LostException(failure);
                await stream_.WriteAsync(line, 0, line.Length).ConfigureAwait(false);
                await stream_.FlushAsync().ConfigureAwait(false);
            }
            catch (Exception error) when (error is IOException || error is ObjectDisposedException)
            {
                if (error is SdxlHostConnectionException) throw;
                Fail(error);
                throw LostException(error);
            }
            finally
            {
                writeLock_.Release();
            }
        }

        /// <summary>Closes the stream; pending requests fail with SdxlHostConnectionException.</summary>
        public void Dispose()
        {
            Fail(new ObjectDisposedException("SdxlHostClient", "the client was disposed or disconnected"));
        }

        private void StartReader()
        {
            reader_ = new Thread(ReadLoop) { IsBackground = true, Name = "sdxl-host reader (" + pipeName_ + ")" };
            reader_.Start();
        }

        private void ReadLoop()
        {
            var buffer = new byte[kReadBufferBytes];
            var line = new MemoryStream();
            try
            {
                while (true)
                {
                    int count = stream_.Read(buffer, 0, buffer.Length);
                    if (count <= 0)
                    {
                        Fail(new EndOfStreamException("the host closed the pipe"));
                        return;
                    }
                    SplitLines(buffer, count, line);
                }
            }
            catch (Exception error)
            {
                Fail(error);
            }
        }

        /// <summary>Appends <paramref name="count"/> bytes to the current line and dispatches each complete one.</summary>
        private void SplitLines(byte[] buffer, int count, MemoryStream line)
        {
            int start = 0;
            for (int i = 0; i < count; i++)
            {
                if (buffer[i] != (byte)'\n') continue;
                line.Write(buffer, start, i - start);
                Dispatch(line.GetBuffer(), (int)line.Length);
                line.SetLength(0);
                if (line.Capacity > kKeptLineCapacityBytes) line.Capacity = kReadBufferBytes;  // after a huge image line
                start = i + 1;
            }
            line.Write(buffer, start, count - start);
        }

        private void Dispatch(byte[] bytes, int length)
        {
            IDictionary<string, object> envelope;
            try
            {
                envelope = WireJson.Parse(kUtf8.GetString(bytes, 0, length)) as IDictionary<string, object>;
            }
            catch (Exception error) when (error is FormatException || error is ArgumentException)
            {
                return;  // not ours to answer: the host only sends JSON objects
            }
            string requestId = WireValues.GetString(envelope, "request_id");
            if (envelope == null || requestId == null) return;
            if (WireValues.GetString(envelope, "message_type") == "progress")
            {
                DispatchProgress(requestId, envelope);
                return;
            }
            PendingRequest request;
            if (pending_.TryRemove(requestId, out request)) request.Completion.TrySetResult(envelope);
        }

        private void DispatchProgress(string requestId, IDictionary<string, object> envelope)
        {
            PendingRequest request;
            if (!pending_.TryGetValue(requestId, out request) || request.OnProgress == null) return;
            try
            {
                request.OnProgress(envelope);
            }
            catch (Exception)
            {
                // A failing progress handler must not take the connection (and other requests) down.
            }
        }

        private void Fail(Exception cause)
        {
            lock (failLock_)
            {
                if (failure_ != null) return;
                failure_ = cause;
            }
            try { stream_.Dispose(); } catch (Exception) { }
            foreach (var pair in pending_)
            {
                PendingRequest request;
                if (pending_.TryRemove(pair.Key, out request)) request.Completion.TrySetException(LostException(cause));
            }
        }

        private SdxlHostConnectionException LostException(Exception cause)
        {
            if (cause is ObjectDisposedException)
                return new SdxlHostConnectionException("the connection to sdxl-host (pipe '" + pipeName_ + "') was closed by this client", cause);
            return new SdxlHostConnectionException(
                "the connection to sdxl-host (pipe '" + pipeName_ + "') was lost while the call was in flight (" +
                cause.Message + "); its outcome is unknown. The next call reconnects.", cause);
        }
    }
}
