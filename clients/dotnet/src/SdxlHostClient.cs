// The C# client of sdxl-host. One connection (NamedPipeClientStream: on Linux the Unix socket
// ${TMPDIR:-/tmp}/CoreFxPipe_<name>, on Windows \\.\pipe\<name>) carries any number of requests at
// once; responses are matched by request_id. Cancelling a generation's token sends `cancel` to the
// host and ends the call with OperationCanceledException. If the pipe breaks, pending calls fail
// with SdxlHostConnectionException; call ConnectAsync again to reconnect.
//
// Thread-safety: every method may be called concurrently from any thread.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;

namespace SdxlHost.Client
{
    /// <summary>Talks to one sdxl-host over its named pipe.</summary>
    public sealed class SdxlHostClient : IDisposable
    {
        /// <summary>Default time <see cref="ConnectAsync"/> waits for the pipe to accept.</summary>
        public const int DefaultConnectTimeoutMilliseconds = 5000;

        private readonly string serverName_;
        private readonly string pipeName_;
        private readonly object connectionLock_ = new object();
        private PipeConnection connection_;
        private bool disposed_;

        /// <summary>A client for the host serving <paramref name="pipeName"/> (the host's pipe_name) on <paramref name="serverName"/>.</summary>
        public SdxlHostClient(string pipeName, string serverName = ".")
        {
            if (string.IsNullOrEmpty(pipeName)) throw new ArgumentException("a pipe name is required", "pipeName");
            pipeName_ = pipeName;
            serverName_ = serverName ?? ".";
        }

        /// <summary>The pipe name this client connects to.</summary>
        public string PipeName { get { return pipeName_; } }

        /// <summary>True while a connection is open and has not broken.</summary>
        public bool IsConnected
        {
            get { lock (connectionLock_) return connection_ != null && connection_.IsAlive; }
        }

        /// <summary>
        /// Opens the connection (or a new one after the previous broke). Does nothing when already
        /// connected. Throws <see cref="SdxlHostConnectionException"/> when the host does not accept in time.
        /// </summary>
        public async Task ConnectAsync(int timeoutMilliseconds = DefaultConnectTimeoutMilliseconds,
                                       CancellationToken cancellationToken = default(CancellationToken))
        {
            ThrowIfDisposed();
            if (IsConnected) return;
            var opened = await PipeConnection.OpenAsync(serverName_, pipeName_, timeoutMilliseconds, cancellationToken)
                                             .ConfigureAwait(false);
            PipeConnection previous;
            lock (connectionLock_)
            {
                if (disposed_ || (connection_ != null && connection_.IsAlive))
                {
                    opened.Dispose();  // disposed meanwhile, or a concurrent ConnectAsync won
                    ThrowIfDisposed();
                    return;
                }
                previous = connection_;
                connection_ = opened;
            }
            if (previous != null) previous.Dispose();
        }

        /// <summary>Closes the connection; pending calls fail with <see cref="SdxlHostConnectionException"/>. ConnectAsync may open it again.</summary>
        public void Disconnect()
        {
            PipeConnection current;
            lock (connectionLock_)
            {
                current = connection_;
                connection_ = null;
            }
            if (current != null) current.Dispose();
        }

        /// <summary>
        /// Runs one generation. <paramref name="progress"/> receives the host's progress events in the order
        /// sent, on the client's reader thread (keep the handler short; note that <c>Progress&lt;T&gt;</c>
        /// posts to the thread pool and may reorder them). Cancelling <paramref name="cancellationToken"/>
        /// sends <c>cancel</c> to the host and ends the call with <see cref="OperationCanceledException"/>.
        /// An error answer throws <see cref="SdxlHostException"/> (ErrorCode, Field).
        /// </summary>
        public async Task<EnhancedSDXLResponse> GenerateAsync(EnhancedSDXLRequest request,
                                                             IProgress<GenerationProgress> progress = null,
                                                             CancellationToken cancellationToken = default(CancellationToken))
        {
            if (request == null) throw new ArgumentNullException("request");
            cancellationToken.ThrowIfCancellationRequested();
            var connection = CurrentConnection();
            string requestId = NewRequestId();
            var envelope = EnhancedRequestTransformer.TransformEnhancedSDXLRequest(request, requestId);
            Action<IDictionary<string, object>> onProgress = null;
            if (progress != null) onProgress = e => progress.Report(EnhancedResponseTransformer.TransformProgress(e));
            var pending = connection.Register(requestId, onProgress);
            await SendOrForgetAsync(connection, requestId, envelope).ConfigureAwait(false);

            IDictionary<string, object> reply;
            using (cancellationToken.Register(() => CancelOnHost(connection, requestId, cancellationToken)))
                reply = await pending.Completion.Task.ConfigureAwait(false);

            var response = EnhancedResponseTransformer.TransformResponse(reply);
            if (response.Success) return response;
            if (response.ErrorCode == "CANCELLED" && cancellationToken.IsCancellationRequested)
                throw new OperationCanceledException(cancellationToken);
            throw EnhancedResponseTransformer.ToException(reply, response);
        }

        /// <summary>Round trip of a <c>ping</c>; throws if the host does not answer successfully.</summary>
        public async Task<TimeSpan> PingAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            var watch = Stopwatch.StartNew();
            await SendAsync("ping", null, cancellationToken).ConfigureAwait(false);
            return watch.Elapsed;
        }

        /// <summary>Plugins (with state), schedulers, preprocessors and limits of the host.</summary>
        public async Task<HostCapabilities> GetCapabilitiesAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            var reply = await SendAsync("capabilities", null, cancellationToken).ConfigureAwait(false);
            return EnhancedResponseTransformer.TransformCapabilities(WireValues.GetObject(reply, "data"));
        }

        /// <summary>Every model under the host's models_root, each tagged with its kind (checkpoints, loras, ...).</summary>
        public async Task<List<ModelEntry>> ListModelsAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            var reply = await SendAsync("list_models", null, cancellationToken).ConfigureAwait(false);
            return EnhancedResponseTransformer.TransformModelList(WireValues.GetObject(reply, "data"));
        }

        /// <summary>
        /// Sends any message (e.g. "status", "load_model") and returns the whole response envelope.
        /// Throws <see cref="SdxlHostException"/> when the host answers with success false.
        /// Cancelling the token stops waiting (it does not send <c>cancel</c>).
        /// </summary>
        public async Task<IDictionary<string, object>> SendAsync(string messageType, IDictionary<string, object> data,
                                                                CancellationToken cancellationToken = default(CancellationToken))
        {
            if (string.IsNullOrEmpty(messageType)) throw new ArgumentException("a message type is required", "messageType");
            cancellationToken.ThrowIfCancellationRequested();
            var connection = CurrentConnection();
            string requestId = NewRequestId();
            var envelope = new Dictionary<string, object>
            {
                { "message_type", messageType },
                { "request_id", requestId },
                { "data", data ?? new Dictionary<string, object>() },
            };
            var pending = connection.Register(requestId, null);
            await SendOrForgetAsync(connection, requestId, envelope).ConfigureAwait(false);
            IDictionary<string, object> reply;
            using (cancellationToken.Register(() => AbandonWait(connection, requestId, cancellationToken)))
                reply = await pending.Completion.Task.ConfigureAwait(false);
            if (WireValues.GetBool(reply, "success") != true) throw EnhancedResponseTransformer.ToException(reply);
            return reply;
        }

        /// <summary>Closes the connection for good; pending calls fail with <see cref="SdxlHostConnectionException"/>.</summary>
        public void Dispose()
        {
            lock (connectionLock_) disposed_ = true;
            Disconnect();
        }

        private static string NewRequestId()
        {
            return "cs-" + Guid.NewGuid().ToString("N");
        }

        private void ThrowIfDisposed()
        {
            if (disposed_) throw new ObjectDisposedException("SdxlHostClient");
        }

        private PipeConnection CurrentConnection()
        {
            lock (connectionLock_)
            {
                ThrowIfDisposed();
                if (connection_ == null)
                    throw new SdxlHostConnectionException("not connected to sdxl-host (pipe '" + pipeName_ + "'): call ConnectAsync first");
                if (!connection_.IsAlive)
                    throw new SdxlHostConnectionException(
                        "the connection to sdxl-host (pipe '" + pipeName_ + "') was lost: " + connection_.Failure.Message +
                        ". Call ConnectAsync to reconnect, then retry.", connection_.Failure);
                return connection_;
            }
        }

        private static async Task SendOrForgetAsync(PipeConnection connection, string requestId, IDictionary<string, object> envelope)
        {
            try
            {
                await connection.SendAsync(envelope, CancellationToken.None).ConfigureAwait(false);
            }
            catch
            {
                PendingRequest ignored;
                connection.Forget(requestId, out ignored);
                throw;
            }
        }

        /// <summary>Ends the local wait at once and tells the host to stop the job (fire and forget).</summary>
        private static void CancelOnHost(PipeConnection connection, string requestId, CancellationToken token)
        {
            PendingRequest request;
            if (!connection.Forget(requestId, out request)) return;  // already answered
            request.Completion.TrySetCanceled(token);
            var cancel = new Dictionary<string, object>
            {
                { "message_type", "cancel" },
                { "request_id", NewRequestId() },
                { "data", new Dictionary<string, object> { { "request_id", requestId } } },
            };
            connection.SendAsync(cancel, CancellationToken.None).ContinueWith(
                t => { var ignored = t.Exception; }, TaskContinuationOptions.OnlyOnFaulted);
        }

        private static void AbandonWait(PipeConnection connection, string requestId, CancellationToken token)
        {
            PendingRequest request;
            if (connection.Forget(requestId, out request)) request.Completion.TrySetCanceled(token);
        }
    }
}
