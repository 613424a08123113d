package store

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/arv-upload/arv-upload/internal/agent"
)

// A packed block of small files (64 MiB of 4 KiB files: 16,384 parts) and
// the file records of 20,000 small files, as the small-files benchmark of
// package agent plans them.
func benchParts() []agent.Part {
	ps := make([]agent.Part, 16384)
	for i := range ps {
		ps[i] = agent.Part{
			Path: fmt.Sprintf("run42/sample%03d/reads_%06d.fastq", i/1000, i), Length: 4096, FileSize: 4096,
			MtimeNS: 1764662400123456789 + int64(i), CtimeNS: 1764662400123456789 + int64(i), Inode: 9000000 + uint64(i),
		}
	}
	return ps
}

func benchFiles() []agent.FileRecord {
	fs := make([]agent.FileRecord, 20000)
	for i := range fs {
		fs[i] = agent.FileRecord{
			Path: fmt.Sprintf("run42/sample%03d/reads_%06d.fastq", i/1000, i), Size: 4096,
			MtimeNS: 1764662400123456789 + int64(i), CtimeNS: 1764662400123456789 + int64(i),
			Inode: 9000000 + uint64(i), Mode: 0o100644, Gen: 1,
			Ranges: []agent.Range{{Block: int64(i / 16384), BlockOffset: int64(i%16384) * 4096, Length: 4096}},
		}
	}
	return fs
}

// Sub-benchmarks json (encoding/json, before) and codec (after).
func BenchmarkCodec_encodeParts(b *testing.B) {
	ps := benchParts()
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(ps); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			appendParts(make([]byte, 0, partsRecSize(ps)), ps)
		}
	})
}

func BenchmarkCodec_decodeParts(b *testing.B) {
	v := appendParts(nil, benchParts())
	b.SetBytes(int64(len(v)))
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var ps []agent.Part
			if err := json.Unmarshal(v, &ps); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeParts(v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Encoding 20,000 file records as PutFiles does: each separately.
func BenchmarkCodec_encodeFiles(b *testing.B) {
	fs := benchFiles()
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, f := range fs {
				if _, err := json.Marshal(f); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for i := range fs {
				n += fileRecSize(&fs[i])
			}
			buf := make([]byte, 0, n)
			for i := range fs {
				buf, _ = putBuf(buf, appendFile(buf, &fs[i]))
			}
		}
	})
}

func BenchmarkCodec_decodeFiles(b *testing.B) {
	fs := benchFiles()
	vs := make([][]byte, len(fs))
	for i := range fs {
		vs[i] = appendFile(nil, &fs[i])
	}
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, v := range vs {
				var f agent.FileRecord
				if err := json.Unmarshal(v, &f); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, v := range vs {
				if _, err := decodeFile(v); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
