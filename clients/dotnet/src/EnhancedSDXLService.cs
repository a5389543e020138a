// The C# service's entry point of the seed design: GenerateEnhancedAsync(request) returns an
// EnhancedSDXLResponse whose Success says how it went. An error the host answers (a bad field, a
// missing model, a disabled feature, a timeout) comes back as Success = false with Error,
// ErrorCode and ErrorField (the seed's response-transformer contract) instead of an exception.
// What is not an answer of the host still throws: SdxlHostConnectionException when the host
// cannot be reached or goes away mid-call, OperationCanceledException when the caller cancels,
// ArgumentException for a request that cannot be sent.
//
// Thread-safety: as the client underneath; one instance may be shared by the whole service.

using System;
using System.Threading;
using System.Threading.Tasks;

namespace SdxlHost.Client
{
    /// <summary>Generates images with sdxl-host, answering host errors in the response (see the file comment).</summary>
    public sealed class EnhancedSDXLService : IDisposable
    {
        private readonly ISdxlHostClient client_;
        private readonly bool ownsClient_;

        /// <summary>A service over its own <see cref="SdxlHostClient"/> for the host's <paramref name="pipeName"/> (connects on first use).</summary>
        public EnhancedSDXLService(string pipeName)
            : this(new SdxlHostClient(pipeName), true)
        {
        }

        /// <summary>A service over its own <see cref="SdxlHostClient"/> with <paramref name="options"/> (pipe, connect timeout, defaults).</summary>
        public EnhancedSDXLService(SdxlHostClientOptions options)
            : this(new SdxlHostClient(options), true)
        {
        }

        /// <summary>A service over <paramref name="client"/> (shared, injected or a test double); disposing the service leaves it open.</summary>
        public EnhancedSDXLService(ISdxlHostClient client)
            : this(client, false)
        {
        }

        private EnhancedSDXLService(ISdxlHostClient client, bool ownsClient)
        {
            if (client == null) throw new ArgumentNullException("client");
            client_ = client;
            ownsClient_ = ownsClient;
        }

        /// <summary>The client underneath, for the host's other messages (status, models, upscale, preprocess, ...).</summary>
        public ISdxlHostClient Client { get { return client_; } }

        /// <summary>Runs one generation; host errors come back as <c>Success = false</c>.</summary>
        public Task<EnhancedSDXLResponse> GenerateEnhancedAsync(EnhancedSDXLRequest request)
        {
            return GenerateEnhancedAsync(request, null, CancellationToken.None);
        }

        /// <summary>Runs one generation; cancelling the token cancels the job on the host and throws OperationCanceledException.</summary>
        public Task<EnhancedSDXLResponse> GenerateEnhancedAsync(EnhancedSDXLRequest request, CancellationToken cancellationToken)
        {
            return GenerateEnhancedAsync(request, null, cancellationToken);
        }

        /// <summary>Runs one generation, reporting the host's progress events in order (on the client's reader thread: keep the handler short).</summary>
        public Task<EnhancedSDXLResponse> GenerateEnhancedAsync(EnhancedSDXLRequest request, IProgress<GenerationProgress> progress)
        {
            return GenerateEnhancedAsync(request, progress, CancellationToken.None);
        }

        /// <summary>Runs one generation with progress and cancellation; host errors come back as <c>Success = false</c>.</summary>
        public async Task<EnhancedSDXLResponse> GenerateEnhancedAsync(EnhancedSDXLRequest request, IProgress<GenerationProgress> progress,
                                                                      CancellationToken cancellationToken)
        {
            try
            {
                return await client_.GenerateAsync(request, progress, cancellationToken).ConfigureAwait(false);
            }
            catch (SdxlHostException error)
            {
                if (error.Response != null) return error.Response;
                return new EnhancedSDXLResponse
                {
                    RequestId = error.RequestId,
                    Success = false,
                    Error = error.Message,
                    ErrorCode = error.ErrorCode,
                    WireErrorCode = error.WireErrorCode,
                    ErrorField = error.Field,
                };
            }
        }

        /// <summary>Disposes the client when this service created it (the pipe-name constructor).</summary>
        public void Dispose()
        {
            if (ownsClient_) client_.Dispose();
        }
    }
}
