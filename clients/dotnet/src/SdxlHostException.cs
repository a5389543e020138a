// The two failures a caller of SdxlHostClient handles: the host answered with an error
// (SdxlHostException, with the stable code and the field at fault), or the connection is gone
// (SdxlHostConnectionException; reconnect with ConnectAsync and retry).

using System;
using System.IO;

namespace SdxlHost.Client
{
    /// <summary>The host refused or failed a request; <see cref="ErrorCode"/> is stable, <see cref="Field"/> names the culprit.</summary>
    public class SdxlHostException : Exception
    {
        /// <summary>Creates the exception from the parts of an error response.</summary>
        public SdxlHostException(string errorCode, string message, string field, string requestId,
                                 EnhancedSDXLResponse response = null)
            : base(FormatMessage(errorCode, message))
        {
            ErrorCode = errorCode ?? "INTERNAL_ERROR";
            Field = field;
            RequestId = requestId;
            Response = response;
        }

        /// <summary>The wire's error_code, e.g. VALIDATION_ERROR, FEATURE_DISABLED, CANCELLED.</summary>
        public string ErrorCode { get; private set; }

        /// <summary>Dotted path of the request field at fault (e.g. data.dimensions.width), or null.</summary>
        public string Field { get; private set; }

        /// <summary>The request the error answers.</summary>
        public string RequestId { get; private set; }

        /// <summary>The whole response (warnings included) for generation requests; null otherwise.</summary>
        public EnhancedSDXLResponse Response { get; private set; }

        private static string FormatMessage(string errorCode, string message)
        {
            return "sdxl-host error " + (errorCode ?? "INTERNAL_ERROR") + ": " + (message ?? "(no message)");
        }
    }

    /// <summary>The pipe to the host could not be opened, or broke while requests were pending.</summary>
    public class SdxlHostConnectionException : IOException
    {
        /// <summary>Creates the exception; <paramref name="inner"/> is the I/O failure, if any.</summary>
        public SdxlHostConnectionException(string message, Exception inner = null) : base(message, inner) { }
    }
}
