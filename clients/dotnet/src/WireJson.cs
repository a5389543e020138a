// A small, self-contained JSON reader and writer for the sdxl-host wire (no dependencies beyond
// the base class library, so the client builds with Mono's mcs and with .NET 6/8 alike).
//
// Model: a JSON object is a Dictionary<string, object> (keys in document order when read), an
// array is a List<object>, a string is a string, true/false are bool, null is null, and a number
// is a long when it is an integer that fits and a double otherwise.
// Thread-safety: stateless; every method may be called from any thread.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace SdxlHost.Client
{
    /// <summary>A line of JSON that could not be parsed, or a value that cannot be written.</summary>
    public sealed class WireJsonException : FormatException
    {
        /// <summary>Creates the exception; <paramref name="position"/> is the character offset (-1: none).</summary>
        public WireJsonException(string message, int position)
            : base(position >= 0 ? message + " (at character " + position + ")" : message)
        {
            Position = position;
        }

        /// <summary>Character offset in the parsed text where the problem was found, or -1.</summary>
        public int Position { get; private set; }
    }

    /// <summary>Parses and writes the JSON of the sdxl-host wire.</summary>
    public static class WireJson
    {
        /// <summary>Deepest nesting of arrays and objects <see cref="Parse"/> accepts.</summary>
        public const int MaxDepth = 256;

        /// <summary>Parses one JSON value; the whole text must be that value (whitespace around is fine).</summary>
        public static object Parse(string text)
        {
            if (text == null) throw new ArgumentNullException("text");
            var reader = new Reader(text);
            object value = reader.ReadDocument();
            return value;
        }

        /// <summary>Writes <paramref name="value"/> as compact JSON (no newlines, so it fits one NDJSON line).</summary>
        public static string Serialize(object value)
        {
            var builder = new StringBuilder();
            WriteValue(builder, value, 0);
            return builder.ToString();
        }

        private static void WriteValue(StringBuilder builder, object value, int depth)
        {
            if (depth > MaxDepth) throw new WireJsonException("value nested deeper than " + MaxDepth, -1);
            if (value == null) { builder.Append("null"); return; }
            var text = value as string;
            if (text != null) { WriteString(builder, text); return; }
            if (value is bool) { builder.Append((bool)value ? "true" : "false"); return; }
            if (value is char) { WriteString(builder, value.ToString()); return; }
            if (value is Enum) { WriteString(builder, value.ToString()); return; }
            if (IsInteger(value)) { builder.Append(Convert.ToString(value, CultureInfo.InvariantCulture)); return; }
            if (value is double || value is float || value is decimal) { WriteNumber(builder, Convert.ToDouble(value, CultureInfo.InvariantCulture)); return; }
            var dictionary = value as IDictionary;
            if (dictionary != null) { WriteObject(builder, dictionary, depth); return; }
            var sequence = value as IEnumerable;
            if (sequence != null) { WriteArray(builder, sequence, depth); return; }
            throw new WireJsonException("cannot write a value of type " + value.GetType().FullName + " as JSON", -1);
        }

        private static bool IsInteger(object value)
        {
            return value is int || value is long || value is short || value is byte || value is sbyte
                || value is uint || value is ulong || value is ushort;
        }

        private static void WriteNumber(StringBuilder builder, double number)
        {
            if (double.IsNaN(number) || double.IsInfinity(number))
                throw new WireJsonException("JSON has no NaN or Infinity", -1);
            builder.Append(number.ToString("R", CultureInfo.InvariantCulture));
        }

        private static void WriteObject(StringBuilder builder, IDictionary dictionary, int depth)
        {
            builder.Append('{');
            bool first = true;
            foreach (DictionaryEntry entry in dictionary)
            {
                if (!first) builder.Append(',');
                first = false;
                WriteString(builder, Convert.ToString(entry.Key, CultureInfo.InvariantCulture));
                builder.Append(':');
                WriteValue(builder, entry.Value, depth + 1);
            }
            builder.Append('}');
        }

        private static void WriteArray(StringBuilder builder, IEnumerable sequence, int depth)
        {
            builder.Append('[');
            bool first = true;
            foreach (object item in sequence)
            {
                if (!first) builder.Append(',');
                first = false;
                WriteValue(builder, item, depth + 1);
            }
            builder.Append(']');
        }

        private static void WriteString(StringBuilder builder, string text)
        {
            builder.Append('"');
            foreach (char c in text)
            {
                switch (c)
                {
                    case '"': builder.Append("\\\""); break;
                    case '\\': builder.Append("\\\\"); break;
                    case '\n': builder.Append("\\n"); break;
                    case '\r': builder.Append("\\r"); break;
                    case '\t': builder.Append("\\t"); break;
                    case '\b': builder.Append("\\b"); break;
                    case '\f': builder.Append("\\f"); break;
                    default:
                        // Control characters and the line separators some readers treat as newlines.
                        if (c < 0x20 || c == '\u2028' || c == '\u2029')
                            builder.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else
                            builder.Append(c);
                        break;
                }
            }
            builder.Append('"');
        }

        /// <summary>Recursive-descent reader over one string.</summary>
        private sealed class Reader
        {
            private readonly string text_;
            private int position_;
            private int depth_;

            public Reader(string text) { text_ = text; }

            public object ReadDocument()
            {
                SkipWhitespace();
                object value = ReadValue();
                SkipWhitespace();
                if (position_ != text_.Length) throw Fail("unexpected text after the JSON value");
                return value;
            }

            private WireJsonException Fail(string message) { return new WireJsonException(message, position_); }

            private void SkipWhitespace()
            {
                while (position_ < text_.Length)
                {
                    char c = text_[position_];
                    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
                    position_++;
                }
            }

            private object ReadValue()
            {
                if (position_ >= text_.Length) throw Fail("unexpected end of JSON");
                char c = text_[position_];
                switch (c)
                {
                    case '{': return ReadObject();
                    case '[': return ReadArray();
                    case '"': return ReadString();
                    case 't': ExpectWord("true"); return true;
                    case 'f': ExpectWord("false"); return false;
                    case 'n': ExpectWord("null"); return null;
                    default:
                        if (c == '-' || (c >= '0' && c <= '9')) return ReadNumber();
                        throw Fail("unexpected character '" + c + "'");
                }
            }

            private void ExpectWord(string word)
            {
                if (string.CompareOrdinal(text_, position_, word, 0, word.Length) != 0) throw Fail("expected " + word);
                position_ += word.Length;
            }

            private void Enter()
            {
                if (++depth_ > MaxDepth) throw Fail("JSON nested deeper than " + MaxDepth);
            }

            private Dictionary<string, object> ReadObject()
            {
                Enter();
                position_++;  // '{'
                var result = new Dictionary<string, object>();
                SkipWhitespace();
                if (Peek() == '}') { position_++; depth_--; return result; }
                while (true)
                {
                    SkipWhitespace();
                    if (Peek() != '"') throw Fail("expected a string key");
                    string key = ReadString();
                    SkipWhitespace();
                    if (Peek() != ':') throw Fail("expected ':'");
                    position_++;
                    SkipWhitespace();
                    result[key] = ReadValue();
                    SkipWhitespace();
                    char next = Peek();
                    position_++;
                    if (next == '}') break;
                    if (next != ',') { position_--; throw Fail("expected ',' or '}'"); }
                }
                depth_--;
                return result;
            }

            private List<object> ReadArray()
            {
                Enter();
                position_++;  // '['
                var result = new List<object>();
                SkipWhitespace();
                if (Peek() == ']') { position_++; depth_--; return result; }
                while (true)
                {
                    SkipWhitespace();
                    result.Add(ReadValue());
                    SkipWhitespace();
                    char next = Peek();
                    position_++;
                    if (next == ']') break;
                    if (next != ',') { position_--; throw Fail("expected ',' or ']'"); }
                }
                depth_--;
                return result;
            }

            private char Peek()
            {
                if (position_ >= text_.Length) throw Fail("unexpected end of JSON");
                return text_[position_];
            }

            private string ReadString()
            {
                position_++;  // opening quote
                var builder = new StringBuilder();
                while (true)
                {
                    if (position_ >= text_.Length) throw Fail("unterminated string");
                    char c = text_[position_++];
                    if (c == '"') return builder.ToString();
                    if (c < 0x20) { position_--; throw Fail("control character in string"); }
                    if (c != '\\') { builder.Append(c); continue; }
                    if (position_ >= text_.Length) throw Fail("unterminated escape");
                    char escaped = text_[position_++];
                    switch (escaped)
                    {
                        case '"': builder.Append('"'); break;
                        case '\\': builder.Append('\\'); break;
                        case '/': builder.Append('/'); break;
                        case 'b': builder.Append('\b'); break;
                        case 'f': builder.Append('\f'); break;
                        case 'n': builder.Append('\n'); break;
                        case 'r': builder.Append('\r'); break;
                        case 't': builder.Append('\t'); break;
                        case 'u': builder.Append(ReadHexCodeUnit()); break;
                        default: position_--; throw Fail("unknown escape '\\" + escaped + "'");
                    }
                }
            }

            private char ReadHexCodeUnit()
            {
                if (position_ + 4 > text_.Length) throw Fail("truncated \\u escape");
                int value;
                if (!int.TryParse(text_.Substring(position_, 4), NumberStyles.AllowHexSpecifier,
                                  CultureInfo.InvariantCulture, out value))
                    throw Fail("bad \\u escape");
                position_ += 4;
                return (char)value;
            }

            private object ReadNumber()
            {
                int start = position_;
                if (text_[position_] == '-') position_++;
                int integerStart = position_;
                if (!ConsumeDigits()) throw Fail("expected a digit");
                if (text_[integerStart] == '0' && position_ - integerStart > 1)
                {
                    position_ = integerStart;
                    throw Fail("a number must not start with 0");
                }
                bool isInteger = true;
                if (position_ < text_.Length && text_[position_] == '.')
                {
                    isInteger = false;
                    position_++;
                    if (!ConsumeDigits()) throw Fail("expected a digit after '.'");
                }
                if (position_ < text_.Length && (text_[position_] == 'e' || text_[position_] == 'E'))
                {
                    isInteger = false;
                    position_++;
                    if (position_ < text_.Length && (text_[position_] == '+' || text_[position_] == '-')) position_++;
                    if (!ConsumeDigits()) throw Fail("expected a digit in the exponent");
                }
                string literal = text_.Substring(start, position_ - start);
                long integer;
                if (isInteger && long.TryParse(literal, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out integer))
                    return integer;
                // .NET Framework/Mono throw on overflow, .NET Core returns infinity: refuse both alike.
                double number;
                if (!double.TryParse(literal, NumberStyles.Float, CultureInfo.InvariantCulture, out number) ||
                    double.IsInfinity(number))
                {
                    position_ = start;
                    throw Fail("number out of range");
                }
                return number;
            }

            private bool ConsumeDigits()
            {
                int start = position_;
                while (position_ < text_.Length && text_[position_] >= '0' && text_[position_] <= '9') position_++;
                return position_ > start;
            }
        }
    }
}
