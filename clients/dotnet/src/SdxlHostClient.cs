// The C# client of sdxl-host. It connects on the first call (NamedPipeClientStream: on Linux the
// Unix socket ${TMPDIR:-/tmp}/CoreFxPipe_<name>, on Windows \\.\pipe\<name>), and again on the
// first call after the connection broke (host restarted): calls in flight when it broke fail with
// SdxlHostConnectionException, the next call opens a new connection. One connection carries any
// number of calls at once; responses are matched by request_id. Cancelling the token of a queued
// job (generation, upscale, preprocess, load_model) sends `cancel` to the host and ends the call
// with OperationCanceledException.
//
// Thread-safety: every member may be called concurrently from any thread; one instance is meant to
// be shared by the whole service (register it as a singleton).

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;

namespace SdxlHost.Client
{
    /// <summary>Settings of an <see cref="SdxlHostClient"/>.</summary>
    public sealed class SdxlHostClientOptions
    {
        /// <summary>The host's pipe_name (or an absolute socket path on Linux).</summary>
        public string PipeName { get; set; }

        /// <summary>The machine of the pipe ("." = this one).</summary>
        public string ServerName { get; set; } = ".";

        /// <summary>How long opening the connection may take before <see cref="SdxlHostConnectionException"/>.</summary>
        public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

        /// <summary>Settings filled in for generations that leave them unset (e.g. the size); null: the host's defaults.</summary>
        public GenerationDefaults Defaults { get; set; }
    }

    /// <summary>Talks to one sdxl-host over its named pipe. See <see cref="ISdxlHostClient"/>.</summary>
    public sealed class SdxlHostClient : ISdxlHostClient
    {
        /// <summary>Default time a connection may take to open.</summary>
        public const int DefaultConnectTimeoutMilliseconds = 5000;

        private readonly string serverName_;
        private readonly string pipeName_;
        private readonly int connectTimeoutMilliseconds_;
        private readonly GenerationDefaults defaults_;
        private readonly SemaphoreSlim connectGate_ = new SemaphoreSlim(1, 1);
        private readonly object connectionLock_ = new object();
        private PipeConnection connection_;
        private bool disposed_;

        /// <summary>A client for the host serving <paramref name="pipeName"/> (the host's pipe_name) on <paramref name="serverName"/>.</summary>
        public SdxlHostClient(string pipeName, string serverName = ".")
            : this(new SdxlHostClientOptions { PipeName = pipeName, ServerName = serverName ?? "." })
        {
        }

        /// <summary>A client with the given settings.</summary>
        public SdxlHostClient(SdxlHostClientOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            if (string.IsNullOrEmpty(options.PipeName)) throw new ArgumentException("a pipe name is required", "options");
            if (options.ConnectTimeout <= TimeSpan.Zero) throw new ArgumentException("ConnectTimeout must be positive", "options");
            pipeName_ = options.PipeName;
            serverName_ = options.ServerName ?? ".";
            connectTimeoutMilliseconds_ = (int)Math.Min(int.MaxValue, options.ConnectTimeout.TotalMilliseconds);
            if (options.Defaults != null)
                defaults_ = new GenerationDefaults { Width = options.Defaults.Width, Height = options.Defaults.Height };
        }

        /// <inheritdoc />
        public string PipeName { get { return pipeName_; } }

        /// <inheritdoc />
        public bool IsConnected
        {
            get { lock (connectionLock_) return connection_ != null && connection_.IsAlive; }
        }

        /// <inheritdoc />
        public Task ConnectAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            return ConnectAsync(connectTimeoutMilliseconds_, cancellationToken);
        }

        /// <summary>Opens the connection now, waiting at most <paramref name="timeoutMilliseconds"/>; does nothing when connected.</summary>
        public async Task ConnectAsync(int timeoutMilliseconds, CancellationToken cancellationToken = default(CancellationToken))
        {
            await GetConnectionAsync(timeoutMilliseconds, cancellationToken).ConfigureAwait(false);
        }

        /// <inheritdoc />
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

        /// <inheritdoc />
        public async Task<EnhancedSDXLResponse> GenerateAsync(EnhancedSDXLRequest request, IProgress<GenerationProgress> progress = null,
                                                              CancellationToken cancellationToken = default(CancellationToken))
        {
            if (request == null) throw new ArgumentNullException("request");
            var envelope = EnhancedRequestTransformer.TransformEnhancedSDXLRequest(request, request.RequestId ?? NewRequestId(), defaults_);
            return await RunJobAsync(envelope, progress, cancellationToken).ConfigureAwait(false);
        }

        /// <inheritdoc />
        public async Task<EnhancedSDXLResponse> UpscaleAsync(UpscaleRequest request, IProgress<GenerationProgress> progress = null,
                                                             CancellationToken cancellationToken = default(CancellationToken))
        {
            if (request == null) throw new ArgumentNullException("request");
            var envelope = EnhancedRequestTransformer.TransformUpscaleRequest(request, request.RequestId ?? NewRequestId());
            return await RunJobAsync(envelope, progress, cancellationToken).ConfigureAwait(false);
        }

        /// <inheritdoc />
        public async Task<PreprocessResult> PreprocessAsync(PreprocessRequest request, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (request == null) throw new ArgumentNullException("request");
            var envelope = EnhancedRequestTransformer.TransformPreprocessRequest(request, request.RequestId ?? NewRequestId());
            var reply = await ExchangeAsync(envelope, null, true, cancellationToken).ConfigureAwait(false);
            ThrowIfFailed(reply, cancellationToken);
            return EnhancedResponseTransformer.TransformPreprocess(reply);
        }

        /// <inheritdoc />
        public async Task<CancelResult> CancelAsync(string requestId, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (string.IsNullOrEmpty(requestId)) throw new ArgumentException("the request id of the job to cancel is required", "requestId");
            var reply = await SendAsync("cancel", new Dictionary<string, object> { { "request_id", requestId } }, cancellationToken)
                .ConfigureAwait(false);
            return EnhancedResponseTransformer.TransformCancel(WireValues.GetObject(reply, "data"));
        }

        /// <inheritdoc />
        public async Task<PingResult> PingAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            await GetConnectionAsync(connectTimeoutMilliseconds_, cancellationToken).ConfigureAwait(false);
            var watch = Stopwatch.StartNew();
            var reply = await SendAsync("ping", null, cancellationToken).ConfigureAwait(false);
            var result = EnhancedResponseTransformer.TransformPing(WireValues.GetObject(reply, "data"));
            result.RoundTrip = watch.Elapsed;
            return result;
        }

        /// <inheritdoc />
        public async Task<HostStatus> GetStatusAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            var reply = await SendAsync("status", null, cancellationToken).ConfigureAwait(false);
            return EnhancedResponseTransformer.TransformStatus(WireValues.GetObject(reply, "data"));
        }

        /// <inheritdoc />
        public async Task<HostMetrics> GetMetricsAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            var reply = await SendAsync("metrics", null, cancellationToken).ConfigureAwait(false);
            var data = WireValues.GetObject(reply, "data");
            return new HostMetrics { ContentType = WireValues.GetString(data, "content_type"), Text = WireValues.GetString(data, "text") };
        }

        /// <inheritdoc />
        public async Task<HostCapabilities> GetCapabilitiesAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            var reply = await SendAsync("capabilities", null, cancellationToken).ConfigureAwait(false);
            return EnhancedResponseTransformer.TransformCapabilities(WireValues.GetObject(reply, "data"));
        }

        /// <inheritdoc />
        public async Task<List<ModelEntry>> ListModelsAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            var reply = await SendAsync("list_models", null, cancellationToken).ConfigureAwait(false);
            return EnhancedResponseTransformer.TransformModelList(WireValues.GetObject(reply, "data"));
        }

        /// <inheritdoc />
        public async Task<ModelLoadResult> LoadModelAsync(ModelKind kind, string name, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("a model name is required", "name");
            var envelope = EnhancedRequestTransformer.Envelope("load_model", NewRequestId(), ModelData(kind, name));
            var reply = await ExchangeAsync(envelope, null, true, cancellationToken).ConfigureAwait(false);
            ThrowIfFailed(reply, cancellationToken);
            return EnhancedResponseTransformer.TransformModelLoad(WireValues.GetObject(reply, "data"));
        }

        /// <inheritdoc />
        public async Task<ModelLoadResult> UnloadModelAsync(ModelKind kind, string name, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("a model name is required", "name");
            var reply = await SendAsync("unload_model", ModelData(kind, name), cancellationToken).ConfigureAwait(false);
            return EnhancedResponseTransformer.TransformModelLoad(WireValues.GetObject(reply, "data"));
        }

        /// <inheritdoc />
        public async Task<ReloadResult> ReloadConfigAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            var reply = await SendAsync("reload_config", null, cancellationToken).ConfigureAwait(false);
            return EnhancedResponseTransformer.TransformReload(reply);
        }

        /// <inheritdoc />
        public async Task ShutdownAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            await SendAsync("shutdown", null, cancellationToken).ConfigureAwait(false);
        }

        /// <inheritdoc />
        public async Task<IDictionary<string, object>> SendAsync(string messageType, IDictionary<string, object> data,
                                                                CancellationToken cancellationToken = default(CancellationToken))
        {
            var envelope = EnhancedRequestTransformer.Envelope(messageType, NewRequestId(), data);
            var reply = await ExchangeAsync(envelope, null, false, cancellationToken).ConfigureAwait(false);
            ThrowIfFailed(reply, cancellationToken);
            return reply;
        }

        /// <summary>Closes the connection for good; pending calls fail with <see cref="SdxlHostConnectionException"/>, later calls with ObjectDisposedException.</summary>
        public void Dispose()
        {
            lock (connectionLock_) disposed_ = true;
            Disconnect();
        }

        private static string NewRequestId()
        {
            return "cs-" + Guid.NewGuid().ToString("N");
        }

        private static Dictionary<string, object> ModelData(ModelKind kind, string name)
        {
            return new Dictionary<string, object> { { "kind", EnhancedRequestTransformer.ModelKindToWire(kind) }, { "name", name } };
        }

        private void ThrowIfDisposed()
        {
            lock (connectionLock_)
                if (disposed_) throw new ObjectDisposedException("SdxlHostClient");
        }

        /// <summary>A generation or upscale: the typed response, or the typed exception of an error answer.</summary>
        private async Task<EnhancedSDXLResponse> RunJobAsync(Dictionary<string, object> envelope, IProgress<GenerationProgress> progress,
                                                             CancellationToken cancellationToken)
        {
            Action<IDictionary<string, object>> onProgress = null;
            if (progress != null) onProgress = e => progress.Report(EnhancedResponseTransformer.TransformProgress(e));
            var reply = await ExchangeAsync(envelope, onProgress, true, cancellationToken).ConfigureAwait(false);
            var response = EnhancedResponseTransformer.TransformResponse(reply);
            if (response.Success) return response;
            if (response.ErrorCode == SdxlHostErrorCode.Cancelled && cancellationToken.IsCancellationRequested)
                throw new OperationCanceledException(cancellationToken);
            throw EnhancedResponseTransformer.ToException(reply, response);
        }

        private static void ThrowIfFailed(IDictionary<string, object> reply, CancellationToken cancellationToken)
        {
            if (WireValues.GetBool(reply, "success") == true) return;
            if (WireValues.GetString(reply, "error_code") == "CANCELLED" && cancellationToken.IsCancellationRequested)
                throw new OperationCanceledException(cancellationToken);
            throw EnhancedResponseTransformer.ToException(reply);
        }

        /// <summary>
        /// Sends <paramref name="envelope"/> and waits for its response line. When the connection turns out
        /// to be dead before the line was sent, a fresh one is opened and the send is tried once more
        /// (nothing reached the host, so nothing runs twice). Cancelling the token ends the wait at once;
        /// with <paramref name="cancelOnHost"/> it also sends `cancel` for the job.
        /// </summary>
        private async Task<IDictionary<string, object>> ExchangeAsync(Dictionary<string, object> envelope,
                                                                     Action<IDictionary<string, object>> onProgress,
                                                                     bool cancelOnHost, CancellationToken cancellationToken)
        {
            cancellationToken.ThrowIfCancellationRequested();
            string requestId = (string)envelope["request_id"];
            for (int attempt = 0; ; attempt++)
            {
                var connection = await GetConnectionAsync(connectTimeoutMilliseconds_, cancellationToken).ConfigureAwait(false);
                PendingRequest pending;
                try
                {
                    pending = connection.Register(requestId, onProgress);
                    await SendOrForgetAsync(connection, requestId, envelope).ConfigureAwait(false);
                }
                catch (SdxlHostConnectionException)
                {
                    if (attempt > 0) throw;
                    continue;  // the connection died before this request was sent: reconnect once
                }
                using (cancellationToken.Register(() =>
                       {
                           if (cancelOnHost) CancelOnHost(connection, requestId, cancellationToken);
                           else AbandonWait(connection, requestId, cancellationToken);
                       }))
                    return await pending.Completion.Task.ConfigureAwait(false);
            }
        }

        /// <summary>The live connection, opening one (one caller at a time) when there is none or it broke.</summary>
        private async Task<PipeConnection> GetConnectionAsync(int timeoutMilliseconds, CancellationToken cancellationToken)
        {
            lock (connectionLock_)
            {
                if (disposed_) throw new ObjectDisposedException("SdxlHostClient");
                if (connection_ != null && connection_.IsAlive) return connection_;
            }
            await connectGate_.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                lock (connectionLock_)
                {
                    if (disposed_) throw new ObjectDisposedException("SdxlHostClient");
                    if (connection_ != null && connection_.IsAlive) return connection_;  // another caller connected meanwhile
                }
                var opened = await PipeConnection.OpenAsync(serverName_, pipeName_, timeoutMilliseconds, cancellationToken)
                                                 .ConfigureAwait(false);
                PipeConnection previous;
                lock (connectionLock_)
                {
                    if (disposed_)
                    {
                        opened.Dispose();
                        throw new ObjectDisposedException("SdxlHostClient");
                    }
                    previous = connection_;
                    connection_ = opened;
                }
                if (previous != null) previous.Dispose();
                return opened;
            }
            finally
            {
                connectGate_.Release();
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
            var cancel = EnhancedRequestTransformer.Envelope("cancel", NewRequestId(),
                new Dictionary<string, object> { { "request_id", requestId } });
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
