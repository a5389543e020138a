// An image the client sends (init image, control image, the image to upscale or preprocess). The
// host takes images as base64 PNG or JPEG inside the JSON line, never as a path (the host may run
// elsewhere and reads nothing outside its models_root), so a file is read here, at creation.
// Thread-safety: immutable.

using System;
using System.IO;

namespace SdxlHost.Client
{
    /// <summary>A PNG or JPEG image to send, held as the base64 the wire carries.</summary>
    public sealed class ImageInput
    {
        private ImageInput(string base64)
        {
            Base64 = base64;
        }

        /// <summary>The base64 text sent on the wire.</summary>
        public string Base64 { get; private set; }

        /// <summary>Reads the file now (PNG or JPEG); throws the usual I/O exceptions (FileNotFoundException, ...).</summary>
        public static ImageInput FromFile(string path)
        {
            if (string.IsNullOrEmpty(path)) throw new ArgumentException("an image path is required", "path");
            return FromBytes(File.ReadAllBytes(path));
        }

        /// <summary>The encoded file's bytes (PNG or JPEG; the host decodes them when the job runs).</summary>
        public static ImageInput FromBytes(byte[] encoded)
        {
            if (encoded == null) throw new ArgumentNullException("encoded");
            if (encoded.Length == 0) throw new ArgumentException("the image has no bytes", "encoded");
            return new ImageInput(Convert.ToBase64String(encoded));
        }

        /// <summary>Base64 of a PNG or JPEG (a <c>data:image/...;base64,</c> prefix is allowed), sent as is.</summary>
        public static ImageInput FromBase64(string base64)
        {
            if (string.IsNullOrEmpty(base64)) throw new ArgumentException("the base64 text is empty", "base64");
            return new ImageInput(base64);
        }

        /// <summary>A base64 string, as the seed's request model carried images (same as <see cref="FromBase64"/>).</summary>
        public static implicit operator ImageInput(string base64)
        {
            return base64 == null ? null : FromBase64(base64);
        }

        /// <summary>Encoded PNG/JPEG bytes (same as <see cref="FromBytes"/>).</summary>
        public static implicit operator ImageInput(byte[] encoded)
        {
            return encoded == null ? null : FromBytes(encoded);
        }
    }
}
