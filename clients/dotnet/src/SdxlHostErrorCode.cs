// The host's stable error codes (docs/protocol.md, "Error codes") as an enum, and the one mapping
// between the enum and the wire's SCREAMING_SNAKE_CASE text. A code this client does not know
// (a newer host) reads as Unknown; the wire text is kept beside it (WireErrorCode).
// Thread-safety: stateless.

using System;
using System.Collections.Generic;
using System.Text;

namespace SdxlHost.Client
{
    /// <summary>The host's <c>error_code</c>.</summary>
    public enum SdxlHostErrorCode
    {
        /// <summary>No error (a successful response).</summary>
        None = 0,

        /// <summary>A code this client version does not know; see the wire text.</summary>
        Unknown,

        /// <summary>A field is missing, of the wrong type or out of range (the field is named).</summary>
        ValidationError,

        /// <summary>The line was not a JSON object.</summary>
        MalformedJson,

        /// <summary>message_type names no message.</summary>
        UnknownMessageType,

        /// <summary>The line exceeded the host's limits.max_message_bytes.</summary>
        MessageTooLarge,

        /// <summary>The request needs a feature whose plugin is disabled, failed or missing.</summary>
        FeatureDisabled,

        /// <summary>A model name resolves to no file under models_root.</summary>
        ModelNotFound,

        /// <summary>A model file exists but cannot be read.</summary>
        ModelLoadError,

        /// <summary>The host's queue is full.</summary>
        QueueFull,

        /// <summary>metadata.timeout passed (queued or running).</summary>
        Timeout,

        /// <summary>The job was cancelled (cancel message, or its client went away).</summary>
        Cancelled,

        /// <summary>cancel named no queued or running job.</summary>
        NotFound,

        /// <summary>A stage failed with a plugin error.</summary>
        PluginError,

        /// <summary>Encoding or saving the image failed.</summary>
        OutputError,

        /// <summary>The host is stopping.</summary>
        ShuttingDown,

        /// <summary>A bug in the host or a plugin.</summary>
        InternalError,

        /// <summary>A service the host needs is unreachable (a gateway's message broker); retry later.</summary>
        Unavailable,
    }

    /// <summary>Conversions between <see cref="SdxlHostErrorCode"/> and the wire's text.</summary>
    public static class SdxlHostErrorCodes
    {
        private static readonly Dictionary<string, SdxlHostErrorCode> kByWire = BuildByWire();

        /// <summary>The enum value of a wire code ("MODEL_NOT_FOUND"); null or empty: None; not known: Unknown.</summary>
        public static SdxlHostErrorCode Parse(string wireCode)
        {
            if (string.IsNullOrEmpty(wireCode)) return SdxlHostErrorCode.None;
            SdxlHostErrorCode code;
            return kByWire.TryGetValue(wireCode, out code) ? code : SdxlHostErrorCode.Unknown;
        }

        /// <summary>The wire text of <paramref name="code"/> ("ModelNotFound" -> "MODEL_NOT_FOUND"); None and Unknown: null.</summary>
        public static string ToWire(SdxlHostErrorCode code)
        {
            if (code == SdxlHostErrorCode.None || code == SdxlHostErrorCode.Unknown) return null;
            string name = code.ToString();
            var wire = new StringBuilder();
            for (int i = 0; i < name.Length; i++)
            {
                if (i > 0 && char.IsUpper(name[i])) wire.Append('_');
                wire.Append(char.ToUpperInvariant(name[i]));
            }
            return wire.ToString();
        }

        private static Dictionary<string, SdxlHostErrorCode> BuildByWire()
        {
            var byWire = new Dictionary<string, SdxlHostErrorCode>(StringComparer.Ordinal);
            foreach (SdxlHostErrorCode code in Enum.GetValues(typeof(SdxlHostErrorCode)))
            {
                string wire = ToWire(code);
                if (wire != null) byWire[wire] = code;
            }
            return byWire;
        }
    }
}
