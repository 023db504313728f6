import { testStore } from '@keypool/testing';
import { memoryStore } from './index.js';

testStore('memory', { create: async () => memoryStore() });
