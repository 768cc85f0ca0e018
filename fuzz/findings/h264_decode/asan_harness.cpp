// Decodes one file the way the openh264 crate (0.9.9) does for codec::Decoder: default
// SDecodingParam, trace quiet, 0 threads, error concealment 0, DecodeFrameNoDelay then a flush
// when frames remain.
#include "codec_api.h"
#include <cstdio>
#include <vector>
int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "rb");
  std::vector<unsigned char> buf(1 << 22);
  size_t n = fread(buf.data(), 1, buf.size(), f);
  fclose(f);
  for (int round = 0; round < 2; round++) {
    ISVCDecoder* dec = nullptr;
    WelsCreateDecoder(&dec);
    SDecodingParam p = {};
    dec->Initialize(&p);
    int quiet = 0, threads = 0, ec = 0;
    dec->SetOption(DECODER_OPTION_TRACE_LEVEL, &quiet);
    dec->SetOption(DECODER_OPTION_NUM_OF_THREADS, &threads);
    dec->SetOption(DECODER_OPTION_ERROR_CON_IDC, &ec);
    for (int i = 0; i < 2; i++) {
      unsigned char* dst[3] = {};
      SBufferInfo info = {};
      long r = dec->DecodeFrameNoDelay(buf.data(), (int)n, dst, &info);
      fprintf(stderr, "decode %d: %ld status %d\n", i, r, info.iBufferStatus);
      int remaining = 0;
      dec->GetOption(DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER, &remaining);
      if (info.iBufferStatus == 0 && remaining > 0) {
        SBufferInfo fi = {};
        dec->FlushFrame(dst, &fi);
      }
    }
    dec->Uninitialize();
    WelsDestroyDecoder(dec);
  }
  return 0;
}
