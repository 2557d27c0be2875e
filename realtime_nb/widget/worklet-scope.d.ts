// What worklet.js finds in scope, for the type checker only (tsc -p jsconfig.json): the
// AudioWorkletGlobalScope's names (lib.dom.d.ts has none of them), and the pure helpers of
// audio.js that widget.py inlines in front of worklet.js (see worklet_source()).

declare const sampleRate: number;
declare const currentTime: number;
declare function registerProcessor(name: string, processor: new (options: any) => AudioWorkletProcessor): void;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: any);
}

declare const StreamingResampler: typeof import("./audio.js").StreamingResampler;
declare const PcmChunker: typeof import("./audio.js").PcmChunker;
declare const PlaybackQueue: typeof import("./audio.js").PlaybackQueue;
declare const levels: typeof import("./audio.js").levels;
declare const bytesToPcm16: typeof import("./audio.js").bytesToPcm16;
declare const pcm16ToFloat: typeof import("./audio.js").pcm16ToFloat;
