namespace JetDsl.Build
{
    using System;
    using System.IO;
    using System.Linq;
    using System.Text;
    using Microsoft.Build.Framework;
    using Microsoft.Build.Utilities;

    /// <summary>
    /// Marks one GNU version requirement (for example GLIBCXX_3.4.32) of an ELF64 shared library as weak,
    /// but only when this machine's libstdc++ does not provide that version. The file is replaced, never
    /// written in place, because the build output may hard-link into the NuGet cache.
    /// </summary>
    public sealed class WeakenGlibcxxRequirement : Task
    {
        const uint ShtGnuVerneed = 0x6ffffffe;
        const ushort VerFlgWeak = 0x2;

        [Required] public ITaskItem[] Libraries { get; set; } = Array.Empty<ITaskItem>();
        [Required] public string Version { get; set; } = "";

        static readonly string[] LibraryDirectories =
        {
            "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
            "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib", "/usr/local/lib64", "/usr/local/lib",
        };

        public override bool Execute()
        {
            if (SystemLibstdcxxHas(Version))
            {
                Log.LogMessage(MessageImportance.Low, $"System libstdc++ provides {Version}; TorchSharp needs no patch.");
                return true;
            }
            foreach (var item in Libraries)
            {
                var path = item.GetMetadata("FullPath");
                var bytes = File.ReadAllBytes(path);
                string outcome;
                try { outcome = Weaken(bytes, Version); }
                catch (Exception e) when (e is IndexOutOfRangeException || e is ArgumentException || e is InvalidDataException)
                {
                    Log.LogWarning($"{path}: not a readable ELF64 library ({e.Message}); left as it is.");
                    continue;
                }
                if (outcome == "patched")
                {
                    var temporary = path + ".jetdsl-tmp";
                    File.WriteAllBytes(temporary, bytes);
                    File.Delete(path);
                    File.Move(temporary, path);
                    Log.LogMessage(MessageImportance.High, $"JetDsl: marked {Version} weak in {path} (system libstdc++ lacks it).");
                }
                else
                {
                    Log.LogMessage(MessageImportance.Low, $"{path}: {outcome}.");
                }
            }
            return !Log.HasLoggedErrors;
        }

        static bool SystemLibstdcxxHas(string version)
        {
            var directories = (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "")
                .Split(new[] { ':' }, StringSplitOptions.RemoveEmptyEntries)
                .Concat(LibraryDirectories);
            var needle = Encoding.ASCII.GetBytes(version + "\0");
            foreach (var directory in directories)
            {
                var candidate = Path.Combine(directory, "libstdc++.so.6");
                if (File.Exists(candidate) && IndexOf(File.ReadAllBytes(candidate), needle) >= 0) return true;
            }
            return false;
        }

        static int IndexOf(byte[] haystack, byte[] needle)
        {
            for (int i = 0; i + needle.Length <= haystack.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && haystack[i + j] == needle[j]) j++;
                if (j == needle.Length) return i;
            }
            return -1;
        }

        /// <summary>Sets VER_FLG_WEAK on the vernaux entry named <paramref name="version"/>.</summary>
        static string Weaken(byte[] elf, string version)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("no ELF magic");
            if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("not a little-endian ELF64 file");
            ulong sectionHeaders = BitConverter.ToUInt64(elf, 0x28);
            int entrySize = BitConverter.ToUInt16(elf, 0x3A);
            int count = BitConverter.ToUInt16(elf, 0x3C);
            for (int s = 0; s < count; s++)
            {
                int header = checked((int)sectionHeaders + s * entrySize);
                if (BitConverter.ToUInt32(elf, header + 4) != ShtGnuVerneed) continue;
                int verneed = checked((int)BitConverter.ToUInt64(elf, header + 0x18));
                int link = (int)BitConverter.ToUInt32(elf, header + 0x28);
                int needs = (int)BitConverter.ToUInt32(elf, header + 0x2C);
                int strings = checked((int)BitConverter.ToUInt64(elf, (int)sectionHeaders + link * entrySize + 0x18));
                int need = verneed;
                for (int n = 0; n < needs; n++)
                {
                    int auxCount = BitConverter.ToUInt16(elf, need + 2);
                    int aux = need + (int)BitConverter.ToUInt32(elf, need + 8);
                    for (int a = 0; a < auxCount; a++)
                    {
                        int name = strings + (int)BitConverter.ToUInt32(elf, aux + 8);
                        int end = Array.IndexOf(elf, (byte)0, name);
                        if (Encoding.ASCII.GetString(elf, name, end - name) == version)
                        {
                            ushort flags = BitConverter.ToUInt16(elf, aux + 4);
                            if ((flags & VerFlgWeak) != 0) return "already weak";
                            flags |= VerFlgWeak;
                            elf[aux + 4] = (byte)flags;
                            elf[aux + 5] = (byte)(flags >> 8);
                            return "patched";
                        }
                        aux += (int)BitConverter.ToUInt32(elf, aux + 12);
                    }
                    need += (int)BitConverter.ToUInt32(elf, need + 12);
                }
            }
            return "no requirement on " + version;
        }
    }
}
