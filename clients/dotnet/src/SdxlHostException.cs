// The two failures a caller of SdxlHostClient handles: the host answered with an error
// (SdxlHostException, with the stable code and the field at fault), or the connection is gone
// (SdxlHostConnectionException; the next call reconnects on its own).

using System;
using System.IO;

namespace SdxlHost.Client
{
    /// <summary>The host refused or failed a request; <see cref="ErrorCode"/> is stable, <see cref="Field"/> names the culprit.</summary>
    public class SdxlHostException : Exception
    {
        /// <summary>Creates the exception from the parts of an error response (<paramref name="wireErrorCode"/> as the host sent it).</summary>
        public SdxlHostException(string wireErrorCode, string message, string field, string requestId,
                                 EnhancedSDXLResponse response = null)
            : base(FormatMessage(wireErrorCode, message))
        {
            WireErrorCode = string.IsNullOrEmpty(wireErrorCode) ? "INTERNAL_ERROR" : wireErrorCode;
            ErrorCode = SdxlHostErrorCodes.Parse(WireErrorCode);
            Field = field;
            RequestId = requestId;
            Response = response;
        }

        /// <summary>The error code (ValidationError, FeatureDisabled, ModelNotFound, Cancelled, ...).</summary>
        public SdxlHostErrorCode ErrorCode { get; private set; }

        /// <summary>The wire's error_code text, e.g. "VALIDATION_ERROR" (also for codes the enum does not know).</summary>
        public string WireErrorCode { get; private set; }

        /// <summary>Dotted path of the request field at fault (e.g. data.dimensions.width), or null.</summary>
        public string Field { get; private set; }

        /// <summary>The request the error answers.</summary>
        public string RequestId { get; private set; }

        /// <summary>The whole response (warnings included) for generations and upscales; null otherwise.</summary>
        public EnhancedSDXLResponse Response { get; private set; }

        private static string FormatMessage(string errorCode, string message)
        {
            return "sdxl-host error " + (string.IsNullOrEmpty(errorCode) ? "INTERNAL_ERROR" : errorCode) + ": " +
                   (message ?? "(no message)");
        }
    }

    /// <summary>
    /// The pipe to the host could not be opened, or broke while the call was in flight (the host
    /// stopped or restarted). The call's outcome is unknown; the next call reconnects.
    /// </summary>
    public class SdxlHostConnectionException : IOException
    {
        /// <summary>Creates the exception; <paramref name="inner"/> is the I/O failure, if any.</summary>
        public SdxlHostConnectionException(string message, Exception inner = null) : base(message, inner) { }
    }
}
